"""The transactions ledger: every bank notification of a merchant's mailboxes, as a record.

It is a projection of the CREDITS stream (`credit.matched|unmatched|ambiguous|rejected|
dismissed`), written by the matcher's ledger consumer and rebuilt from the stream by
`autopay admin rebuild-orders`; a manual match also writes it at once. Per merchant, under the
hash tag `{l:<merchant_id>}`:
- `tx:<id>`: the record as JSON (the id is the credit id, or a rejection's record id);
- `all`: zset id → when it reached the mailbox (ms), newest first for listing;
- `status:<status>`: the same, per status.

A record never goes back from `matched` (a replayed unmatched decision cannot undo a payment),
and a dismissal survives any rewrite. Records are kept as long as the CREDITS stream keeps
events (90 days).
"""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as aioredis

from autopay_contracts import (
    Credit,
    CreditAmbiguous,
    CreditDismissed,
    CreditMatched,
    CreditRejected,
    CreditUnmatched,
)
from autopay_contracts.events import UNOWNED
from autopay_store import scripts
from autopay_store.keys import Keys
from autopay_store.mailboxes import MailboxOwners
from autopay_store.replies import maybe_text, scored

TransactionStatus = Literal["matched", "unmatched", "ambiguous", "late", "duplicate", "rejected"]
STATUSES: tuple[TransactionStatus, ...] = TransactionStatus.__args__  # type: ignore[attr-defined]
MATCHABLE: frozenset[str] = frozenset({"unmatched", "ambiguous", "late"})
"""The statuses of a credit nobody has taken: a merchant may match or dismiss it."""
RETENTION_S = 90 * 24 * 3600
LATE_REASON = "the order holding this amount is expired"
"""The matcher's reason when the amount's order had expired: the customer paid too late."""


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at else None


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Transaction:
    id: str
    merchant_id: str
    status: TransactionStatus
    received_at: datetime
    reason: str | None = None
    amount_tiyin: int | None = None
    card_last4: str | None = None
    gmail: str | None = None
    mailbox_id: str | None = None
    occurred_at: datetime | None = None
    order_id: str | None = None
    candidates: tuple[str, ...] = ()
    late: bool = False
    manual: bool = False
    matched_by: str | None = None
    matched_at: datetime | None = None
    dismissed_at: datetime | None = None
    dismissed_by: str | None = None
    test_mode: bool = False
    credit: dict[str, Any] | None = field(default=None, repr=False)
    """The credit as it was decided (absent for a rejection): what a manual match pays with."""

    @property
    def matchable(self) -> bool:
        return self.status in MATCHABLE and self.dismissed_at is None and self.credit is not None

    def to_json(self) -> str:
        # Field by field rather than `asdict`, which deep-copies every value first (a cost on
        # the matcher's path: one ledger entry per credit).
        data = {f.name: getattr(self, f.name) for f in _FIELDS}
        for name in ("received_at", "occurred_at", "matched_at", "dismissed_at"):
            data[name] = _iso(data[name])
        data["candidates"] = list(self.candidates)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Transaction:
        data = json.loads(raw)
        for name in ("received_at", "occurred_at", "matched_at", "dismissed_at"):
            data[name] = _at(data.get(name))
        candidates = data.get("candidates") or []
        data["candidates"] = tuple(candidates) if isinstance(candidates, list) else ()
        if not data.get("credit"):  # Lua's cjson writes an empty table as {}
            data["credit"] = None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def as_credit(self) -> Credit:
        assert self.credit is not None
        return Credit.model_validate(self.credit)


_FIELDS = fields(Transaction)


def _from_credit(credit: Credit, merchant_id: str, status: TransactionStatus, **kw) -> Transaction:
    return Transaction(
        id=credit.credit_id,
        merchant_id=merchant_id,
        status=status,
        received_at=credit.received_at,
        amount_tiyin=credit.amount_tiyin,
        card_last4=credit.card_last4,
        gmail=credit.gmail,
        mailbox_id=credit.mailbox_id,
        occurred_at=credit.occurred_at,
        test_mode=credit.test_mode,
        credit=credit.model_dump(mode="json"),
        **kw,
    )


def transaction_of(
    event: CreditMatched | CreditUnmatched | CreditAmbiguous, merchant_id: str | None = None
) -> Transaction:
    """The ledger record a credit decision makes."""
    merchant = merchant_id or event.merchant_id
    credit = event.credit
    if isinstance(event, CreditMatched):
        return _from_credit(
            credit,
            merchant,
            "matched",
            order_id=event.order_id,
            late=event.late,
            manual=event.manual,
            matched_by=event.matched_by,
            matched_at=event.matched_at,
        )
    if isinstance(event, CreditAmbiguous):
        return _from_credit(
            credit,
            merchant,
            "ambiguous",
            candidates=tuple(event.candidate_order_ids),
            reason="several orders wait for this amount",
        )
    status: TransactionStatus = "late" if event.reason == LATE_REASON else "unmatched"
    return _from_credit(credit, merchant, status, reason=event.reason)


def rejection_of(event: CreditRejected, merchant_id: str) -> Transaction | None:
    """The ledger record of a rejected notification; None for mail that is not a bank
    notification at all (`ignored`)."""
    if event.kind == "ignored":
        return None
    reason = event.reason if event.kind == "rejected" else f"{event.kind}: {event.reason}"
    if event.refusal:
        reason = f"{event.refusal}: {event.reason}"
    return Transaction(
        id=event.record_id,
        merchant_id=merchant_id,
        status="rejected",
        received_at=event.received_at,
        reason=reason,
        gmail=event.gmail,
        mailbox_id=event.mailbox_id,
    )


@dataclass(frozen=True)
class Page:
    transactions: list[Transaction]
    next_cursor: str | None


class UnknownTransaction(Exception):
    pass


class AlreadyMatched(Exception):
    """The credit paid an order already: there is nothing to dismiss or match."""


def ledger_scope(merchant_id: str, test_mode: bool) -> str:
    """Whose ledger: a merchant's live one, or its sandbox's (test keys see only that)."""
    return f"{merchant_id}:test" if test_mode else merchant_id


def _cursor(score: float, tx_id: str) -> str:
    return base64.urlsafe_b64encode(f"{int(score)}:{tx_id}".encode()).decode().rstrip("=")


def parse_cursor(cursor: str) -> tuple[int, str]:
    """Raises ValueError for anything that is not a cursor this module made."""
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    score, _, tx_id = raw.partition(":")
    if not tx_id:
        raise ValueError("not a cursor")
    return int(score), tx_id


class Ledger:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._upsert = scripts.register(redis, "ledger_upsert")
        self._dismiss = scripts.register(redis, "ledger_dismiss")

    def _keys(self, merchant_id: str) -> list[str]:
        return [self.keys.ledger(merchant_id, "all")] + [
            self.keys.ledger(merchant_id, f"status:{status}") for status in STATUSES
        ]

    async def record(self, tx: Transaction) -> str:
        """Write a record ('created', 'updated', or 'kept' when it is matched already), in the
        merchant's live ledger or, for a test-mode credit, in its sandbox ledger."""
        scope = ledger_scope(tx.merchant_id, tx.test_mode)
        score = int(tx.received_at.timestamp() * 1000)
        oldest = int((datetime.now(UTC).timestamp() - RETENTION_S) * 1000)
        return await self._upsert(
            keys=[self.keys.ledger(scope, f"tx:{tx.id}"), *self._keys(scope)],
            args=[tx.to_json(), tx.status, score, tx.id, RETENTION_S, oldest],
        )

    async def get(self, scope: str, tx_id: str) -> Transaction | None:
        """`scope` is `ledger_scope(merchant_id, test_mode)`, as for every read below."""
        raw = maybe_text(await self.redis.get(self.keys.ledger(scope, f"tx:{tx_id}")))
        return Transaction.from_json(raw) if raw else None

    async def dismiss(self, scope: str, tx_id: str, at: datetime, by: str) -> Transaction:
        verdict = await self._dismiss(
            keys=[self.keys.ledger(scope, f"tx:{tx_id}")], args=[at.astimezone(UTC).isoformat(), by]
        )
        if verdict == "unknown":
            raise UnknownTransaction(tx_id)
        if verdict == "matched":
            raise AlreadyMatched(tx_id)
        found = await self.get(scope, tx_id)
        assert found is not None
        return found

    async def apply_dismissal(self, event: CreditDismissed) -> None:
        """The projection of `credit.dismissed` (a rebuild replays it)."""
        scope = ledger_scope(event.merchant_id, event.test_mode)
        with contextlib.suppress(UnknownTransaction, AlreadyMatched):
            await self.dismiss(scope, event.transaction_id, event.dismissed_at, event.dismissed_by)

    async def page(
        self,
        scope: str,
        *,
        status: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Newest first. `cursor` is the previous page's `next_cursor`."""
        index = self.keys.ledger(scope, f"status:{status}" if status else "all")
        high: str | int = "+inf"
        after: tuple[int, str] | None = None
        if cursor:
            after = parse_cursor(cursor)
            high = after[0]
        low: str | int = int(since.timestamp() * 1000) if since else "-inf"
        found: list[tuple[str, float]] = []
        offset = 0
        while len(found) < limit + 1:
            batch = scored(
                await self.redis.zrevrangebyscore(
                    index, high, low, start=offset, num=limit + 1, withscores=True
                )
            )
            if not batch:
                break
            offset += len(batch)
            for tx_id, score in batch:
                if after and int(score) == after[0] and tx_id >= after[1]:
                    continue  # at or before the cursor (equal times come in reverse id order)
                found.append((tx_id, score))
            if len(batch) < limit + 1:
                break
        ids = [tx_id for tx_id, _ in found[:limit]]
        raws = await scripts.get_many(self.redis, [self.keys.ledger(scope, f"tx:{i}") for i in ids])
        transactions = [Transaction.from_json(raw) for raw in raws if raw]
        more = len(found) > limit
        next_cursor = _cursor(found[limit - 1][1], found[limit - 1][0]) if more else None
        return Page(transactions, next_cursor)


async def replay_ledger(event: object, ledger: Ledger, owners: MailboxOwners) -> int:
    """Apply one CREDITS event to the ledger (the consumer's projection, and a rebuild's);
    returns 1 when it was a ledger event, else 0. A rejection goes to the mailbox's owner,
    when the mailbox has one."""
    if isinstance(event, CreditMatched | CreditUnmatched | CreditAmbiguous):
        if event.merchant_id != UNOWNED:
            await ledger.record(transaction_of(event))
        return 1
    if isinstance(event, CreditRejected):
        owner = (await owners.owners([event.mailbox_id])).get(event.mailbox_id)
        record = rejection_of(event, owner) if owner else None
        if record is not None:
            await ledger.record(record)
        return 1
    if isinstance(event, CreditDismissed):
        await ledger.apply_dismissal(event)
        return 1
    return 0
