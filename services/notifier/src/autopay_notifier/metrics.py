"""Prometheus metrics of the notifier (served on `/metrics` by `autopay_runtime.health`).

Label values come from fixed sets only (`OUTCOMES`, `STATUS_CLASSES`, `ACTIONS`), never a URL,
a merchant or an order.
"""

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
SCHEDULED = Gauge(
    "autopay_notifier_scheduled_deliveries",
    "Webhook deliveries in the schedule (due, retrying later or in an attempt), all replicas",
)
BACKLOG_AGE = Gauge(
    "autopay_notifier_backlog_age_seconds",
    "How long the earliest due delivery has waited to be claimed (0: none overdue)",
)
ACCEPTED = Counter(
    "autopay_notifier_order_events_total",
    "Order events consumed, by what the notifier did with them",
    ["action"],
)


OUTCOMES = ("delivered", "failed", "exhausted")
STATUS_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")
ACTIONS = ("scheduled", "duplicate", "skipped")

# Every label value exists from the start, so rates and alerts see a 0 before the first event.
for _outcome in OUTCOMES:
    for _class in STATUS_CLASSES:
        ATTEMPTS.labels(_outcome, _class)
for _action in ACTIONS:
    ACCEPTED.labels(_action)


def observe_backlog(scheduled: int, earliest_due: float | None, now: float) -> None:
    SCHEDULED.set(scheduled)
    BACKLOG_AGE.set(max(0.0, now - earliest_due) if earliest_due is not None else 0.0)


def status_class(code: int | None) -> str:
    if code is None or not 100 <= code <= 599:
        return "none"
    return f"{code // 100}xx"
