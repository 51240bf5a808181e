"""The figures of a chaos run, from what the driver saw: pure, no I/O (tested on synthetic data).

Inputs are three views of the same run, gathered independently so that one can contradict
another: the driver's own record of every order it meant to create (`Intent`), every webhook
the local receiver got (`Delivery`), and the merchants' transactions ledgers (`LedgerRecord`,
`GET /api/transactions`). Amounts are unique per card over the whole run, so a bank mail is
identified by `(gmail, card_last4, amount)`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from autopay_contracts import normalize_gmail

FAILING = (
    "lost",
    "double_paid",
    "missing_webhooks",
    "duplicate_webhook_ids",
    "wrong_matches",
    "ledger_gaps",
    "idempotency_failures",
    "create_errors",
    "mail_errors",
    "bad_signatures",
)
"""Every figure that must be 0 for the run to pass."""


@dataclass
class Intent:
    """One order the driver meant to create and pay, and what became of it."""

    index: int
    merchant: int
    gmail: str
    card_last4: str
    amount: int  # so'm; unique per card over the run
    order_id: str | None = None
    create_error: str | None = None
    """Why no order id came back: the call kept failing, or a terminal answer."""
    idempotency_failure: bool = False
    """A retry with the same `Idempotency-Key` was not a replay of the first call (it ran the
    creation again), so the first call's order exists but its id never reached the client."""
    mail_delivered: bool = False
    """The bank's mail for this order was APPENDed (the server said OK)."""
    mail_error: str | None = None
    mailed_at: float | None = None
    """When the APPEND was acknowledged (monotonic seconds)."""
    status: str | None = None
    """From the final `check-payment`."""

    @property
    def mail(self) -> tuple[str, str, int]:
        return (normalize_gmail(self.gmail), self.card_last4, self.amount)


@dataclass(frozen=True)
class Delivery:
    """One webhook request the receiver got (the payload's fields, as far as it had them)."""

    merchant: int
    webhook_id: str | None
    verified: bool
    """Its Standard Webhooks signature verified with the merchant's secret."""
    order_id: str | None = None
    status: str | None = None
    paid_at: str | None = None
    gmail: str = ""
    card_last4: str = ""
    amount: int = 0
    received_at: float = 0.0
    """Monotonic seconds."""

    @property
    def mail(self) -> tuple[str, str, int]:
        return (normalize_gmail(self.gmail), self.card_last4, self.amount)


@dataclass(frozen=True)
class LedgerRecord:
    """One record of a merchant's transactions ledger."""

    id: str
    status: str
    order_id: str | None
    gmail: str
    card_last4: str
    amount: int

    @property
    def mail(self) -> tuple[str, str, int]:
        return (normalize_gmail(self.gmail), self.card_last4, self.amount)


def recover_order_ids(
    intents: Iterable[Intent], deliveries: Iterable[Delivery], ledger: Iterable[LedgerRecord]
) -> int:
    """Give an order id to the intents of an idempotency failure (their order exists, its id
    never reached the client): the order the ledger's matched record of their mail names,
    else the one a verified webhook for their mail names. Returns how many were recovered."""
    by_mail = {r.mail: r.order_id for r in ledger if r.status == "matched" and r.order_id}
    for d in deliveries:
        if d.verified and d.order_id and d.status == "paid":
            by_mail.setdefault(d.mail, d.order_id)
    recovered = 0
    for intent in intents:
        if intent.order_id is None and intent.idempotency_failure:
            intent.order_id = by_mail.get(intent.mail)
            recovered += intent.order_id is not None
    return recovered


def lost_intents(intents: Iterable[Intent]) -> list[Intent]:
    """The customer's money arrived (the mail was delivered) and the order is not paid, or the
    client never learned which order it is."""
    return [i for i in intents if i.mail_delivered and (i.order_id is None or i.status != "paid")]


def ledger_gaps(intents: Iterable[Intent], ledger: Iterable[LedgerRecord]) -> list[Intent]:
    """The paid orders whose credit the ledger does not show as matched to them."""
    in_ledger = {r.order_id for r in ledger if r.status == "matched" and r.order_id}
    return [i for i in intents if i.status == "paid" and i.order_id not in in_ledger]


def evaluate(
    intents: list[Intent], deliveries: list[Delivery], ledger: list[LedgerRecord]
) -> dict[str, float]:
    """The figures of the run (every name in `FAILING` must be 0) and the counts around them."""
    created = [i for i in intents if i.order_id is not None]
    by_order = {i.order_id: i for i in created}
    paid = [i for i in created if i.status == "paid"]

    paid_deliveries: dict[str, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        if d.order_id is not None and d.status == "paid":
            paid_deliveries[d.order_id].append(d)

    matched = [r for r in ledger if r.status == "matched" and r.order_id]
    credits_of_order: dict[str, set[str]] = defaultdict(set)
    orders_of_credit: dict[str, set[str]] = defaultdict(set)
    orders_of_mail: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    for r in matched:
        assert r.order_id is not None
        credits_of_order[r.order_id].add(r.id)
        orders_of_credit[r.id].add(r.order_id)
        orders_of_mail[r.mail].add(r.order_id)

    # double_paid: an order paid by two credits (the ledger), an order whose webhooks tell two
    # payments (two paid_at), a credit that paid two orders, a mail whose credits (the mail read
    # twice under two credit ids) paid two orders.
    twice_paid = {o for o, credits in credits_of_order.items() if len(credits) > 1}
    twice_paid |= {
        o
        for o, ds in paid_deliveries.items()
        if len({d.paid_at for d in ds if d.verified and d.paid_at}) > 1
    }
    double_credits = [c for c, orders in orders_of_credit.items() if len(orders) > 1]
    double_mails = [m for m, orders in orders_of_mail.items() if len(orders) > 1]

    # wrong_matches: a credit paid an order that is not its own (another mailbox, card or
    # amount), or an order the driver never created.
    wrong = [
        r for r in matched if (intent := by_order.get(r.order_id)) is None or intent.mail != r.mail
    ]
    gaps = ledger_gaps(paid, ledger)

    missing = [i for i in paid if not any(d.verified for d in paid_deliveries[i.order_id or ""])]
    duplicate_ids = [o for o, ds in paid_deliveries.items() if len({d.webhook_id for d in ds}) > 1]
    latencies = sorted(
        min(d.received_at for d in paid_deliveries[i.order_id or ""]) - i.mailed_at
        for i in paid
        if i.mailed_at is not None and paid_deliveries.get(i.order_id or "")
    )

    return {
        "orders": len(created),
        "paid": len(paid),
        "mails": sum(1 for i in intents if i.mail_delivered),
        "lost": len(lost_intents(intents)),
        "double_paid": len(twice_paid) + len(double_credits) + len(double_mails),
        "missing_webhooks": len(missing),
        "duplicate_webhook_ids": len(duplicate_ids),
        "wrong_matches": len(wrong),
        "ledger_gaps": len(gaps),
        "idempotency_failures": sum(1 for i in intents if i.idempotency_failure),
        "create_errors": sum(1 for i in intents if i.create_error and not i.idempotency_failure),
        "mail_errors": sum(1 for i in intents if i.mail_error is not None),
        "bad_signatures": sum(1 for d in deliveries if not d.verified),
        "webhooks": len(deliveries),
        "webhook_retries": sum(
            len(ds) - len({d.webhook_id for d in ds}) for ds in paid_deliveries.values()
        ),
        "unmatched_credits": sum(1 for r in ledger if r.status not in ("matched", "duplicate")),
        "duplicate_credits": sum(1 for r in ledger if r.status == "duplicate"),
        "mail_to_webhook_p50_s": round(latencies[len(latencies) // 2], 2) if latencies else 0,
        "mail_to_webhook_max_s": round(latencies[-1], 2) if latencies else 0,
    }


def clean(figures: dict[str, float]) -> bool:
    """Every figure of `FAILING` is 0."""
    return all(figures.get(name, 0) == 0 for name in FAILING)
