"""Prometheus metrics of the merchant bot (served on `/metrics` by `autopay_runtime.health`).

Label values come from fixed sets only (`ALERT_KINDS`, `ALERT_OUTCOMES`, `CALL_OUTCOMES`),
never a chat, a merchant or an order.
"""

from prometheus_client import Counter

ALERT_KINDS = (
    "mailbox_auth_failed",
    "mailbox_down",
    "mailbox_recovered",
    "credit_unmatched",
    "credit_ambiguous",
    "no_candidates",
    "webhook_failing",
    "webhook_recovered",
    "webhook_exhausted",
    "quota_80",
    "quota_100",
    "expiring",
    "purchase_paid",
)
"""The texts the bot sends merchants unasked (its alerts); any other text counts as `other`."""
ALERT_OUTCOMES = ("sent", "unreachable")
CALL_OUTCOMES = ("ok", "retried", "unreachable", "failed")

ALERTS = Counter(
    "autopay_bot_alerts_total",
    "Alerts the bot told merchants, by kind and outcome (sent, unreachable)",
    ["kind", "outcome"],
)
TELEGRAM_CALLS = Counter(
    "autopay_bot_telegram_calls_total",
    "Bot API calls by outcome (ok, retried, unreachable, failed)",
    ["outcome"],
)

# Every label value exists from the start, so rates and alerts see a 0 before the first event.
for _kind in (*ALERT_KINDS, "other"):
    for _outcome in ALERT_OUTCOMES:
        ALERTS.labels(_kind, _outcome)
for _outcome in CALL_OUTCOMES:
    TELEGRAM_CALLS.labels(_outcome)


def alert(kind: str, outcome: str) -> None:
    ALERTS.labels(kind if kind in ALERT_KINDS else "other", outcome).inc()
