"""Prometheus metrics of the notifier (served on `/metrics` by `autopay_runtime.health`)."""

from prometheus_client import Counter, Gauge, Histogram

ATTEMPTS = Counter(
    "autopay_notifier_attempts_total",
    "Webhook delivery attempts by outcome (delivered, failed, exhausted) and status class",
    ["outcome", "status_class"],
)
ATTEMPT_SECONDS = Histogram(
    "autopay_notifier_attempt_duration_seconds",
    "Duration of one webhook HTTP attempt",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
)
IN_FLIGHT = Gauge("autopay_notifier_in_flight", "Webhook HTTP attempts in progress")
QUEUED = Gauge(
    "autopay_notifier_queued", "Claimed deliveries waiting in a per-endpoint lane of this process"
)
DEFERRED = Counter(
    "autopay_notifier_deferred_total",
    "Deliveries handed back to the schedule because their endpoint's lane was full",
)
ACCEPTED = Counter(
    "autopay_notifier_order_events_total",
    "Order events consumed, by what the notifier did with them",
    ["action"],
)


def status_class(code: int | None) -> str:
    return "none" if code is None else f"{code // 100}xx"
