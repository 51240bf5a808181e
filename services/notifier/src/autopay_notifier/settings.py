"""Notifier configuration (`AUTOPAY_*` environment variables)."""

from __future__ import annotations

from pydantic import Field

from autopay_notifier.domain import DEFAULT_SCHEDULE_S
from autopay_runtime.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    http_port: int = 8084
    durable: str = "notifier"
    fetch_batch: int = 64

    allow_http_loopback: bool = Field(
        default=False, description="Dev only: allow http://127.0.0.1 / localhost webhooks"
    )
    user_agent: str = "AutoPay-Webhooks/1.0 (+https://standardwebhooks.com)"

    retry_schedule_s: list[float] = Field(default_factory=lambda: list(DEFAULT_SCHEDULE_S))
    retry_jitter: float = 0.2
    overload_floor_s: float = 60.0
    retry_after_cap_s: float = 10 * 3600.0

    connect_timeout_s: float = 5.0
    total_timeout_s: float = 15.0
    response_cap_bytes: int = 64 * 1024

    max_outstanding: int = 4096
    per_host_in_flight: int = 8
    per_host_queue: int = 256
    lease_s: float = 60.0
    poll_interval_s: float = 0.5
    busy_defer_s: float = 0.5
    max_defer_s: float = 600.0
    shutdown_grace_s: float = 10.0

    redis_max_connections: int = 64
    redis_pool_timeout_s: float = 5.0

    delivery_retention_s: int = 30 * 24 * 3600
    delivery_log_max: int = 100
    consumer_start_margin_s: float = Field(
        default=24 * 3600.0,
        ge=0,
        description="A new consumer starts this long inside the delivery-record retention",
    )

    @property
    def consumer_lookback_s(self) -> float:
        """How far back a new durable consumer starts: never before the oldest event whose
        delivery record may still exist."""
        return max(0.0, self.delivery_retention_s - self.consumer_start_margin_s)
