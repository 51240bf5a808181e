"""Prometheus metrics of the matcher (process-wide, registered once).

Label values come from fixed sets only (outcomes, causes, dead-letter kinds, pass results).
"""

from prometheus_client import Counter, Gauge, Histogram

from autopay_matcher.deadletters import POISON_KINDS

CREDITS = Counter(
    "autopay_matcher_credits_total",
    "Credits decided, by outcome (matched, unmatched, ambiguous, duplicate)",
    ["outcome"],
)
OUTCOMES = ("matched", "unmatched", "ambiguous", "duplicate")
ORDERS_EXPIRED = Counter("autopay_matcher_orders_expired_total", "Orders expired")
ORDERS_PAID = Counter(
    "autopay_matcher_orders_paid_total",
    "Orders paid by a credit the matcher decided, by whether it came after the deadline",
    ["late"],
)
CONFIRMATION_SECONDS = Histogram(
    "autopay_matcher_confirmation_seconds",
    "Time from the bank's mail reaching the mailbox to its order being paid (the credit's "
    "received_at to the decision): what a customer waits for AutoPay once the money is sent",
    buckets=(0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800),
)
MATCH_SECONDS = Histogram(
    "autopay_matcher_match_seconds",
    "Time from a credit's delivery to its outcome events being stored",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RETRIES = Counter(
    "autopay_matcher_retries_total",
    "Credits handed back for redelivery, by cause (redis, timeout, publish, error)",
    ["cause"],
)
RETRY_CAUSES = ("redis", "timeout", "publish", "error")
DELIVERIES = Histogram(
    "autopay_matcher_credit_deliveries",
    "How many deliveries a credit took until it was decided",
    buckets=(1, 2, 3, 5, 10, 20, 50, 100, 200),
)
DEAD_LETTERS = Counter(
    "autopay_matcher_dead_letters_total",
    "Messages on the credit subject recorded as dead letters, by kind",
    ["kind"],
)
EXPIRY_FAILURES = Counter(
    "autopay_matcher_expiry_pass_failures_total", "Expiry scanner passes that failed"
)
RECONCILER_PASSES = Counter(
    "autopay_matcher_reconciler_passes_total",
    "Reconciler passes, by result (ok, failed, skipped: another replica held the lease)",
    ["result"],
)
RECONCILER_UNDECIDED = Gauge(
    "autopay_matcher_reconciler_undecided_credits",
    "Credits the last reconciler pass found without a decision, old enough and no longer "
    "held by the consumer",
)
RECONCILER_DECIDED = Counter(
    "autopay_matcher_reconciler_decided_total", "Credits the reconciler decided"
)
OLDEST_UNDECIDED_AGE = Gauge(
    "autopay_matcher_oldest_undecided_credit_age_seconds",
    "Age of the oldest received credit still without a decision after the last reconciler "
    "pass (0: none)",
)

# Every label value exists from the start, so rates and alerts see a 0 before the first event.
for _outcome in OUTCOMES:
    CREDITS.labels(outcome=_outcome)
for _late in ("false", "true"):
    ORDERS_PAID.labels(late=_late)
for _cause in RETRY_CAUSES:
    RETRIES.labels(cause=_cause)
for _kind in POISON_KINDS:
    DEAD_LETTERS.labels(kind=_kind)
for _result in ("ok", "failed", "skipped"):
    RECONCILER_PASSES.labels(result=_result)
