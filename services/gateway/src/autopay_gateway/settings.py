"""Gateway settings, read from `AUTOPAY_*` environment variables."""

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from autopay_runtime.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    payment_ttl_seconds: int = Field(300, ge=1, description="An order waits this long")
    quarantine_seconds: int = Field(900, ge=0, description="Amount stays held after an order ends")
    window_lead_seconds: int = 60
    free_tail_max: int = Field(99, ge=1, le=999, description="`amount_base` tails are 1..this")
    max_amount: int = Field(1_000_000_000, description="Largest accepted amount, so'm")

    allow_http_loopback_webhooks: bool = False

    imap_host: str = "imap.gmail.com"
    imap_port: int = 993
    imap_tls: bool = True
    imap_timeout_seconds: float = 10.0

    publish_timeout_seconds: float = 2.0
    publish_attempts: int = Field(
        3, ge=1, description="Publishes of the same Nats-Msg-Id before an event counts as failed"
    )
    outbox_grace_seconds: float = Field(
        30.0, gt=0, description="An unpublished create/cancel this old is published by a sweep"
    )
    outbox_interval_seconds: float = Field(10.0, gt=0, description="How often the sweep runs")
    test_crash_point: Literal[
        "",
        "cancel-after-write",
        "cancel-after-publish",
        "create-after-write",
        "create-after-publish",
    ] = Field("", description="Tests only: SIGKILL the process at this point (see faults.py)")
    failed_auth_per_s: float = Field(
        1.0, ge=0, description="Failed key checks allowed per client address per second"
    )
    failed_auth_burst: int = Field(30, ge=1, description="Failed key checks an address may burst")
    login_checks_per_minute: int = Field(
        5, ge=1, description="IMAP login checks (POST /api/cards) per merchant and per mailbox"
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Where `/metrics` listens: an internal address, never public"
    )
    metrics_port: int = Field(
        9090, ge=0, description="`/metrics` port, apart from the public API's (0: not served)"
    )
    bot_handle: str = Field(
        "@Autopaycardbot", description="The Telegram bot that error messages send merchants to"
    )
    auth_cache_seconds: float = Field(1.0, ge=0, description="How long a merchant is cached")
    idempotency_ttl_seconds: int = 24 * 3600
    order_id_block: int | None = Field(
        None,
        ge=1,
        description="Order ids leased from the global sequence at a time; default 1 (dense "
        "ids) on one Redis, 100 on a Redis Cluster (the sequence's key is not hot)",
    )
    idempotency_pending_seconds: int = Field(
        60,
        ge=1,
        description="How long a call's claim of its Idempotency-Key holds before a retry may "
        "take it over (the call died): longer than any call takes",
    )

    admin_token: SecretStr = Field(
        SecretStr(""),
        description="Bearer token of the admin API (`/admin/*`); empty: the admin API is off",
    )
    admin_port: int = Field(
        0, ge=0, le=65535, description="The admin API's own port, never public (0: not served)"
    )
    admin_host: str = Field("127.0.0.1", description="Where the admin API listens")

    @property
    def admin_enabled(self) -> bool:
        """The admin API is served only with both a token and a port of its own."""
        return bool(self.admin_token.get_secret_value()) and self.admin_port != 0

    @property
    def order_ids_per_lease(self) -> int:
        if self.order_id_block is not None:
            return self.order_id_block
        return 100 if self.redis_cluster else 1

    @model_validator(mode="after")
    def _admin_port_apart(self):
        if self.admin_port and self.admin_port == self.http_port:
            raise ValueError("admin_port must differ from http_port")
        return self
