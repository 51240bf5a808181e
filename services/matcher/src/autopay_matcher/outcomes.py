"""Which events a matching outcome or an expiry produces (pure; no I/O).

Event ids derive from the credit or the order, so publishing the same outcome again (a
redelivered credit after a crash between the Redis commit and the publish) is dropped by
JetStream's `Nats-Msg-Id` dedup.
"""

from __future__ import annotations

from autopay_contracts import (
    CreditAmbiguous,
    CreditMatched,
    CreditUnmatched,
    Event,
    OrderExpired,
    OrderPaid,
)
from autopay_contracts.events import UNOWNED, Credit
from autopay_store.orders import MatchOutcome, OrderRecord


def outcome_events(credit: Credit, outcome: MatchOutcome, owner: str = UNOWNED) -> list[Event]:
    """`owner` is the merchant of the credit's mailbox, the subject token of an unmatched or
    ambiguous decision (a matched one carries its order's merchant)."""
    kind = outcome.original if outcome.kind == "duplicate" else outcome.kind
    if kind == "matched":
        record = outcome.record
        if record is None or record.paid_at is None or record.credit_id != credit.credit_id:
            return []  # the order's data is gone (past retention): nothing left to repeat
        return [
            OrderPaid(
                order=record.order,
                credit_id=credit.credit_id,
                paid_at=record.paid_at,
                late=record.late,
                manual=record.manual,
                matched_by=record.matched_by,
            ),
            CreditMatched(
                credit=credit,
                order_id=record.order.order_id,
                merchant_id=record.order.merchant_id,
                late=record.late,
                manual=record.manual,
                matched_by=record.matched_by,
                matched_at=record.paid_at if record.manual else None,
                amount_difference_tiyin=credit.amount_tiyin - record.order.amount_tiyin,
            ),
        ]
    if kind == "ambiguous":
        return [
            CreditAmbiguous(
                credit=credit, candidate_order_ids=outcome.candidate_order_ids, merchant_id=owner
            )
        ]
    reason = outcome.reason or "no matching order"
    return [CreditUnmatched(credit=credit, reason=reason, merchant_id=owner)]


def needs_owner(outcome: MatchOutcome) -> bool:
    """Whether the decision's subject needs the mailbox's owner looked up."""
    kind = outcome.original if outcome.kind == "duplicate" else outcome.kind
    return kind != "matched"


def expired_event(record: OrderRecord) -> OrderExpired:
    return OrderExpired(order=record.order, expired_at=record.ended_at or record.order.expires_at)
