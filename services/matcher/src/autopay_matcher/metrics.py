"""Prometheus metrics of the matcher (process-wide, registered once)."""

from prometheus_client import Counter, Histogram

CREDITS = Counter("autopay_matcher_credits_total", "Credits processed, by outcome", ["outcome"])
ORDERS_EXPIRED = Counter("autopay_matcher_orders_expired_total", "Orders expired")
MATCH_SECONDS = Histogram(
    "autopay_matcher_match_seconds",
    "Time from a credit's delivery to its outcome events being stored",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RETRIES = Counter("autopay_matcher_retries_total", "Credits handed back for redelivery", ["cause"])
