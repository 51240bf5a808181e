"""Matcher configuration, from `AUTOPAY_*` environment variables."""

from __future__ import annotations

from pydantic import model_validator

from autopay_runtime.settings import ServiceSettings


class MatcherSettings(ServiceSettings):
    http_port: int = 8083

    quarantine_seconds: int = 900
    """How long an ended order keeps its amount on the card; also the late grace."""
    window_lead_seconds: int = 60
    order_retention_seconds: int = 30 * 24 * 3600
    """How long ended orders and decided credits stay in Redis (check-payment, redeliveries)."""

    expiry_scan_interval_seconds: float = 0.25
    expiry_lease_seconds: float = 30.0
    expiry_batch: int = 500

    consumer_name: str = "matcher"
    ledger_consumer_name: str = "ledger"
    """The durable that projects credit decisions into the merchants' ledgers."""
    fetch_batch: int = 256
    fetch_timeout_seconds: float = 1.0
    ack_wait_seconds: float = 30.0
    """Must exceed `decision_timeout_seconds`, so a batch in hand is nacked by the matcher before
    JetStream gives it to another replica."""
    retry_delay_seconds: float = 1.0
    """Delay before a credit whose decision failed is delivered again; doubles with every
    delivery up to `retry_max_delay_seconds`. There is no delivery limit."""
    retry_max_delay_seconds: float = 30.0
    decision_timeout_seconds: float = 10.0
    """Longest wait for one batch's decision and outcome events (a hung Redis or NATS), after
    which the batch is nacked."""
    publish_timeout_seconds: float = 5.0

    reconcile_interval_seconds: float = 60.0
    """How often the reconciler looks for received credits without a decision (also at start)."""
    reconcile_min_age_seconds: float = 180.0
    """A credit younger than this is left to the consumer; older and undecided, it is decided
    by the reconciler."""
    reconcile_batch: int = 256

    @model_validator(mode="after")
    def _nack_before_ack_wait(self) -> MatcherSettings:
        if self.ack_wait_seconds <= self.decision_timeout_seconds:
            raise ValueError("ack_wait_seconds must exceed decision_timeout_seconds")
        return self
