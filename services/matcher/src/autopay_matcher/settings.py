"""Matcher configuration, from `AUTOPAY_*` environment variables."""

from autopay_runtime.settings import ServiceSettings


class MatcherSettings(ServiceSettings):
    http_port: int = 8083

    quarantine_seconds: int = 900
    """How long an ended order keeps its amount on the card (SPEC §3.3); also the late grace."""
    window_lead_seconds: int = 60
    order_retention_seconds: int = 30 * 24 * 3600
    """How long ended orders and decided credits stay in Redis (check-payment, redeliveries)."""

    expiry_scan_interval_seconds: float = 0.25
    expiry_lease_seconds: float = 30.0
    expiry_batch: int = 500

    consumer_name: str = "matcher"
    fetch_batch: int = 256
    fetch_timeout_seconds: float = 1.0
    ack_wait_seconds: float = 30.0
    max_deliver: int = 20
    retry_delay_seconds: float = 1.0
    publish_timeout_seconds: float = 5.0
