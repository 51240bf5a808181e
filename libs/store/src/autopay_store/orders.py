"""The order book: orders, amount reservations and every order transition, atomic in Redis.

The matching invariants enforced here, each transition a single Lua script on one card's hash tag:
- an amount is held on a `(mailbox, card)` while an order waits and for `quarantine_s` after it
  ends; another order (of any merchant) asking for it gets `AmountReserved`;
- `waiting → paid | expired | cancelled` happens once; a credit pays at most one order and an
  order is paid by at most one credit; replaying the same credit returns the first outcome;
- a late credit (bank time inside the window, mail after the deadline) pays an `expired` order
  while its amount is still quarantined (`late=True`).

Layout. Per card, under the hash tag `{c:<mailbox_id>:<card_last4>}`:
- `order:<id>`: hash with the order JSON and its state (times as epoch milliseconds);
- `holds`: hash amount → holder order id(s). A hold is active while its order waits, and until
  the order's `hold_until` (end + quarantine) after that. Normally one holder per amount;
  `restore` (rebuilding state from the streams) may list several, space separated;
- `releases`: zset amount → hold end of an ended holder, so scripts prune released holds;
- `credits`: hash credit id → JSON of the first outcome; `credits-seen`: zset credit id → decided
  time, to prune decisions older than the retention.
Global: the order id sequence, order id → card locator, the deadlines zset, the outbox. The
global keys are written outside the card scripts (Redis Cluster cannot span slots): the locator,
deadline and outbox entry go in *before* the order exists (or is cancelled), so a crash in
between leaves only a harmless dangling pointer.

The outbox lists the creates and cancels whose event is not acknowledged yet: an
entry is written before the transition and removed once JetStream acknowledged the event
(`published`), so a process killed between the two leaves the entry for `unpublished`, and the
event is published after all (same deterministic id: JetStream drops a copy that did land).
Match scripts address order keys they discover (the amount's holders) by the card's key prefix;
those keys carry the same hash tag, so they are in the script's slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from autopay_contracts.events import Credit, Order
from autopay_store import scripts
from autopay_store.keys import Keys

OrderStatus = Literal["waiting", "paid", "expired", "cancelled"]
MatchKind = Literal["matched", "unmatched", "ambiguous", "duplicate"]
OutboxEvent = Literal["created", "cancelled", "matched"]
"""`matched`: a manual match, whose `order.paid` and `credit.matched` are not acknowledged yet."""

DEFAULT_RETENTION_S = 30 * 24 * 3600


class AmountReserved(Exception):
    """The amount is held by another order on this card (HTTP 409)."""


class NoFreeAmount(Exception):
    """Every tail of the requested base amount is held on this card (HTTP 409)."""


class TransitionNotAllowed(Exception):
    """E.g. cancelling a paid order (HTTP 409). `status` is the order's current status."""

    def __init__(self, status: OrderStatus) -> None:
        super().__init__(f"order is {status}")
        self.status = status


@dataclass(frozen=True)
class OrderRecord:
    order: Order
    status: OrderStatus
    paid_at: datetime | None = None
    credit_id: str | None = None
    late: bool = False
    ended_at: datetime | None = None
    manual: bool = False
    matched_by: str | None = None


class CreditConsumed(Exception):
    """The credit paid an order already (HTTP 409); `order_id` is that order."""

    def __init__(self, order_id: str | None) -> None:
        super().__init__(f"the credit paid order {order_id}")
        self.order_id = order_id


@dataclass(frozen=True)
class MatchOutcome:
    kind: MatchKind
    record: OrderRecord | None = None
    candidate_order_ids: tuple[str, ...] = field(default_factory=tuple)
    reason: str | None = None
    original: Literal["matched", "unmatched", "ambiguous"] | None = None
    """For `duplicate`: the kind of the first outcome (its events are republished as-is)."""


# --- helpers ------------------------------------------------------------------------------


def _ms(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("naive datetime")
    return round(at.timestamp() * 1000)


def _dt(ms: str | int | None) -> datetime | None:
    if ms in (None, ""):
        return None
    return datetime.fromtimestamp(int(float(ms)) / 1000, UTC)


def _pairs(raw: object) -> dict[str, str]:
    """HGETALL from a script: a flat list (RESP2) or a map (RESP3 clients)."""
    if isinstance(raw, dict):
        return {_s(k): _s(v) for k, v in raw.items()}
    items = [_s(x) for x in (raw or [])]  # type: ignore[union-attr]
    return dict(zip(items[::2], items[1::2], strict=True))


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _record(fields: dict[str, str]) -> OrderRecord | None:
    if not fields.get("order"):
        return None
    order = Order.model_validate_json(fields["order"])
    amount = int(fields["amount"])
    if order.amount_tiyin != amount:
        order = order.model_copy(update={"amount_tiyin": amount})
    return OrderRecord(
        order=order,
        status=fields["status"],  # type: ignore[arg-type]
        paid_at=_dt(fields.get("paid_at")),
        credit_id=fields.get("credit_id") or None,
        late=fields.get("late") == "1",
        ended_at=_dt(fields.get("ended")),
        manual=fields.get("manual") == "1",
        matched_by=fields.get("matched_by") or None,
    )


def _outbox_member(event: OutboxEvent, order_id: str) -> str:
    return f"{event}:{order_id}"


def _minute(at: datetime) -> int:
    ms = _ms(at)
    return ms - ms % 60_000


def _match_outcome(result: list) -> MatchOutcome:
    """Decode the match script's reply: kind, the decision JSON, the order hash."""
    kind, decided = _s(result[0]), json.loads(_s(result[1]))
    record = _record(_pairs(result[2]))
    first = decided["kind"]
    candidates = decided.get("candidates") or []
    return MatchOutcome(
        kind=kind,  # type: ignore[arg-type]
        record=record,
        candidate_order_ids=tuple(candidates) if isinstance(candidates, list) else (),
        reason=decided.get("reason"),
        original=first if kind == "duplicate" else None,
    )


# --- the book -----------------------------------------------------------------------------


ORDER_ID_BASE = 10000
"""Order ids are this plus the sequence's value: the first is 10001."""


class OrderBook:
    """All order state. Times are passed in (never read from a clock inside) for testability."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        quarantine_s: int = 900,
        window_lead_s: int = 60,
        retention_s: int = DEFAULT_RETENTION_S,
        id_block: int = 1,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.id_block = max(1, id_block)
        """Order ids taken from the global sequence at a time (`next_order_id`)."""
        self._ids: range = range(0)
        self._ids_lock = asyncio.Lock()
        self.quarantine_s = quarantine_s
        self.window_lead_s = window_lead_s
        self.retention_s = retention_s
        """How long ended orders and decided credits are kept (check-payment, redelivery)."""
        self._create = scripts.register(redis, "order_create", "order_common")
        self._create_free_tail = scripts.register(redis, "order_create_free_tail", "order_common")
        self._cancel = scripts.register(redis, "order_cancel", "order_common")
        self._expire = scripts.register(redis, "order_expire", "order_common")
        self._void = scripts.register(redis, "order_void", "order_common")
        self._match = scripts.register(redis, "order_match", "order_common")
        self._restore = scripts.register(redis, "order_restore", "order_common")
        self._claim_due = scripts.register(redis, "order_claim_due")
        self._match_manual = scripts.register(redis, "order_match_manual")

    # --- keys ---------------------------------------------------------------------------

    def _card_keys(self, mailbox_id: str, card_last4: str) -> tuple[str, str, str]:
        prefix = self.keys.card(mailbox_id, card_last4, "")
        return (
            prefix,
            self.keys.card(mailbox_id, card_last4, "holds"),
            self.keys.card(mailbox_id, card_last4, "releases"),
        )

    @staticmethod
    def _deadline_member(mailbox_id: str, card_last4: str, order_id: str) -> str:
        return f"{mailbox_id}:{card_last4}:{order_id}"

    async def _locate(self, order_id: str) -> tuple[str, str] | None:
        where = await self.redis.get(self.keys.order_locator(order_id))
        if not where:
            return None
        mailbox_id, card_last4 = _s(where).rsplit(":", 1)
        return mailbox_id, card_last4

    async def _register(self, order: Order) -> None:
        """Locator and deadline first: a crash before the card script leaves only pointers to
        nothing, which `get` and the expiry scanner treat as unknown."""
        async with self.redis.pipeline(transaction=False) as pipe:
            self._queue_register(pipe, order)
            await pipe.execute()

    def _queue_register(self, pipe: Any, order: Order) -> None:
        """Queue the order's locator (kept until its record ages out) and its deadline."""
        ttl = max(1, int((order.expires_at - order.created_at).total_seconds()))
        ttl += self.quarantine_s + self.retention_s
        pipe.set(
            self.keys.order_locator(order.order_id),
            f"{order.mailbox_id}:{order.card_last4}",
            ex=ttl,
        )
        member = self._deadline_member(order.mailbox_id, order.card_last4, order.order_id)
        pipe.zadd(
            self.keys.deadline_shard_of(order.mailbox_id, order.card_last4),
            {member: order.expires_at.timestamp()},
        )

    async def _unregister(self, order: Order) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.keys.order_locator(order.order_id))
            self._queue_drop_deadline(pipe, (order.mailbox_id, order.card_last4), order.order_id)
            pipe.zrem(self.keys.outbox, _outbox_member("created", order.order_id))
            await pipe.execute()

    # --- orders -------------------------------------------------------------------------

    async def next_order_id(self) -> str:
        """Next id of the global sequence: "10001", "10002", ...

        With an `id_block` above 1 this book leases that many ids at once (one INCRBY), so the
        sequence's key is touched once per block instead of once per order: ids still start at
        10001 and each block lies above every block leased before it, but two processes hand
        out theirs interleaved, and the unused rest of a block is skipped when its process
        stops (as the id of a refused request is)."""
        if self.id_block == 1:
            return str(ORDER_ID_BASE + int(await self.redis.incr(self.keys.order_sequence)))
        async with self._ids_lock:
            if not self._ids:
                top = int(await self.redis.incrby(self.keys.order_sequence, self.id_block))
                self._ids = range(top - self.id_block + 1, top + 1)
            value, self._ids = self._ids[0], self._ids[1:]
        return str(ORDER_ID_BASE + value)

    async def create(self, order: Order) -> OrderRecord:
        """Reserve `order.amount_tiyin` on its card and store the order `waiting`.

        Raises `AmountReserved` when the amount is held on that card. Schedules its deadline.
        Creating an order id that already exists returns the stored record (a retried call).
        """
        prefix, holds, releases = self._card_keys(order.mailbox_id, order.card_last4)
        result = await self._register_and_run(
            order,
            self._create,
            keys=[
                self.keys.order(order.mailbox_id, order.card_last4, order.order_id),
                holds,
                releases,
            ],
            args=[
                prefix,
                order.order_id,
                order.amount_tiyin,
                order.model_dump_json(),
                _ms(order.created_at),
                _ms(order.expires_at),
                _ms(order.created_at),
                self.quarantine_s * 1000,
            ],
        )
        return await self._created(order, result, AmountReserved(str(order.amount_tiyin)))

    async def create_with_free_tail(
        self, order: Order, base_amount_tiyin: int, tails: range = range(100, 10000, 100)
    ) -> OrderRecord:
        """Server-side unique amount: `order.amount_tiyin` is replaced by the first free
        `base + tail` (tails in tiyin; default 1..99 so'm), chosen atomically.
        Raises `NoFreeAmount` when none is free."""
        prefix, holds, releases = self._card_keys(order.mailbox_id, order.card_last4)
        result = await self._register_and_run(
            order,
            self._create_free_tail,
            keys=[holds, releases],
            args=[
                prefix,
                order.order_id,
                order.model_dump_json(),
                _ms(order.created_at),
                _ms(order.expires_at),
                _ms(order.created_at),
                self.quarantine_s * 1000,
                *(base_amount_tiyin + tail for tail in tails),
            ],
        )
        return await self._created(order, result, NoFreeAmount(str(base_amount_tiyin)))

    async def _register_and_run(
        self, order: Order, script: scripts.Script, keys: list[str], args: list[object]
    ) -> list:
        """`_register` and a creating card script in one round trip: one non-transactional
        pipeline, the locator and deadline queued before the script, so Redis still writes them
        first (Cluster: the pipeline is split by slot; the script stays on its card's slot).

        If the locator or deadline write failed while the script created the order, the order
        is voided and the error raised, as if `_register` had failed before it."""
        async with self.redis.pipeline(transaction=False) as pipe:
            self._queue_register(pipe, order)
            pipe.zadd(
                self.keys.outbox,
                {_outbox_member("created", order.order_id): order.created_at.timestamp()},
            )
            script.queue(pipe, keys, args)
            located, scheduled, pending, result = await pipe.execute(raise_on_error=False)
        failed = next(
            (w for w in (located, scheduled, pending) if isinstance(w, BaseException)), None
        )
        if isinstance(result, NoScriptError) and failed is None:
            result = await script(keys=keys, args=args)
        elif isinstance(result, BaseException) and failed is None:
            raise result
        if failed is not None:
            outcome = None if isinstance(result, BaseException) else _s(result[0])
            if outcome == "ok":
                prefix, holds, _ = self._card_keys(order.mailbox_id, order.card_last4)
                order_key = self.keys.order(order.mailbox_id, order.card_last4, order.order_id)
                await self._void(keys=[order_key, holds], args=[prefix, order.order_id])
            if outcome not in (None, "exists"):  # else an earlier create may own the pointers
                with contextlib.suppress(Exception):
                    await self._unregister(order)
            raise failed
        return result

    async def _created(self, order: Order, result: list, refusal: Exception) -> OrderRecord:
        outcome = _s(result[0])
        if outcome == "ok":
            amount = int(_s(result[1]))
            return OrderRecord(
                order=order.model_copy(update={"amount_tiyin": amount}), status="waiting"
            )
        if outcome == "exists":
            record = await self.get(order.order_id)
            assert record is not None
            return record
        await self._unregister(order)
        raise refusal

    async def restore(self, record: OrderRecord, hold_until: datetime | None = None) -> None:
        """Write a record as it was (rebuilding Redis from the streams), bypassing the
        reservation check: history is replayed, not re-decided."""
        order = record.order
        prefix, holds, releases = self._card_keys(order.mailbox_id, order.card_last4)
        if record.status == "waiting":
            await self._register(order)
            hold_ms = _ms(order.expires_at) + self.quarantine_s * 1000
        else:
            end = hold_until or (record.ended_at or order.expires_at)
            hold_ms = _ms(end) + (0 if hold_until else self.quarantine_s * 1000)
            await self.redis.set(
                self.keys.order_locator(order.order_id),
                f"{order.mailbox_id}:{order.card_last4}",
                ex=self.retention_s,
            )
        fields: dict[str, object] = {
            "order": order.model_dump_json(),
            "status": record.status,
            "amount": order.amount_tiyin,
            "created": _ms(order.created_at),
            "expires": _ms(order.expires_at),
            "hold_until": hold_ms,
            "late": int(record.late),
        }
        if record.paid_at:
            fields["paid_at"] = _ms(record.paid_at)
        if record.credit_id:
            fields["credit_id"] = record.credit_id
        if record.ended_at:
            fields["ended"] = _ms(record.ended_at)
        if record.manual:
            fields["manual"] = 1
        if record.matched_by:
            fields["matched_by"] = record.matched_by
        flat = [x for pair in fields.items() for x in pair]
        ttl = 0 if record.status == "waiting" else self.retention_s
        await self._restore(
            keys=[
                self.keys.order(order.mailbox_id, order.card_last4, order.order_id),
                holds,
                releases,
            ],
            args=[prefix, order.order_id, ttl, *flat],
        )

    async def remember_trace(self, order: Order, traceparent: str) -> None:
        """Keeps the create request's trace context beside the order, for as long as its
        locator, so the credit that pays the order can link its trace to it."""
        ttl = max(1, int((order.expires_at - order.created_at).total_seconds()))
        await self.redis.set(
            self.keys.order_trace(order.mailbox_id, order.card_last4, order.order_id),
            traceparent,
            ex=ttl + self.quarantine_s + self.retention_s,
        )

    async def create_traces(self, orders: list[Order]) -> list[str | None]:
        """The create request's `traceparent` of each order (None where none was kept)."""
        keys = [self.keys.order_trace(o.mailbox_id, o.card_last4, o.order_id) for o in orders]
        return list(await asyncio.gather(*(self.redis.get(key) for key in keys)))

    async def find_on_card(
        self, mailbox_id: str, card_last4: str, order_id: str
    ) -> OrderRecord | None:
        """The order from its card's keys alone (its locator may never have been written)."""
        return _record(
            _pairs(await self.redis.hgetall(self.keys.order(mailbox_id, card_last4, order_id)))
        )

    async def repair(self, order: Order) -> None:
        """Write again what a create writes beside the card script (locator, deadline, the
        outbox's `created`), after a create that failed half-way: all idempotent, and the outbox
        entry only makes the sweep publish `order.created` (a duplicate if it was stored)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            self._queue_register(pipe, order)
            pipe.zadd(
                self.keys.outbox,
                {_outbox_member("created", order.order_id): order.created_at.timestamp()},
                nx=True,
            )
            await pipe.execute()

    async def get(self, order_id: str) -> OrderRecord | None:
        where = await self._locate(order_id)
        if where is None:
            return None
        return _record(_pairs(await self.redis.hgetall(self.keys.order(*where, order_id))))

    async def _transition(self, script, order_id: str, at: datetime) -> tuple[str, tuple | None]:
        where = await self._locate(order_id)
        if where is None:
            return "unknown", None
        prefix, holds, releases = self._card_keys(*where)
        result = await script(
            keys=[self.keys.order(*where, order_id), holds, releases],
            args=[prefix, order_id, _ms(at), self.quarantine_s * 1000, self.retention_s],
        )
        return _s(result[0]), where

    async def cancel(self, order_id: str, at: datetime) -> OrderRecord:
        """`waiting → cancelled`; idempotent on an already cancelled order.
        Raises `TransitionNotAllowed` for paid/expired orders, KeyError when unknown.

        The outbox entry `cancelled` goes in first: until `published("cancelled", id)`, the
        cancel is listed by `unpublished` (after a crash before the script, the entry only says
        to look: the order is not cancelled, so there is nothing to publish)."""
        member = _outbox_member("cancelled", order_id)
        await self.redis.zadd(self.keys.outbox, {member: at.timestamp()})
        outcome, where = await self._transition(self._cancel, order_id, at)
        if outcome not in ("ok", "cancelled"):
            await self.redis.zrem(self.keys.outbox, member)  # nothing cancelled, nothing to say
            if outcome == "unknown":
                raise KeyError(order_id)
            raise TransitionNotAllowed(outcome)  # type: ignore[arg-type]
        if outcome == "ok" and where:
            await self._drop_deadline(where, order_id)
        record = await self.get(order_id)
        if record is None:
            raise KeyError(order_id)
        return record

    async def void(self, order_id: str) -> None:
        """Undo a `create` whose `order.created` event could not be published: the order and its
        reservation disappear as if never made. Only valid while still `waiting`."""
        where = await self._locate(order_id)
        if where is None:
            return
        prefix, holds, _ = self._card_keys(*where)
        outcome = _s(
            await self._void(
                keys=[self.keys.order(*where, order_id), holds], args=[prefix, order_id]
            )
        )
        if outcome not in ("ok", "unknown"):
            raise TransitionNotAllowed(outcome)  # type: ignore[arg-type]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.keys.order_locator(order_id))
            self._queue_drop_deadline(pipe, where, order_id)
            pipe.zrem(self.keys.outbox, _outbox_member("created", order_id))
            await pipe.execute()

    async def match_manually(
        self, order_id: str, credit: Credit, now: datetime, matched_by: str
    ) -> OrderRecord:
        """The merchant pays a waiting or expired order with a credit that paid nothing (the
        caller checked they are on the same card). One script: the order becomes `paid`
        (manual; late past its deadline) and the credit's decision `matched`. Raises
        `CreditConsumed`, `TransitionNotAllowed` (paid or cancelled order) or KeyError.

        The outbox entry `matched` goes in first: until `published("matched", id)`, the
        payment is listed by `unpublished`, so its events are published even after a crash."""
        where = await self._locate(order_id)
        if where is None or where != (credit.mailbox_id, credit.card_last4):
            raise KeyError(order_id)
        member = _outbox_member("matched", order_id)
        await self.redis.zadd(self.keys.outbox, {member: now.timestamp()})
        prefix, _, releases = self._card_keys(*where)
        decisions, seen = self._decision_keys(credit)
        result = await self._match_manual(
            keys=[self.keys.order(*where, order_id), releases, decisions, seen],
            args=[
                prefix,
                order_id,
                credit.credit_id,
                _ms(now),
                self.quarantine_s * 1000,
                self.retention_s,
                matched_by,
            ],
        )
        verdict = _s(result[0])
        if verdict != "ok":
            await self.redis.zrem(self.keys.outbox, member)
            if verdict == "credit_consumed":
                raise CreditConsumed(_s(result[1]) or None)
            if verdict == "unknown":
                raise KeyError(order_id)
            raise TransitionNotAllowed(verdict.removeprefix("order_"))  # type: ignore[arg-type]
        await self._drop_deadline(where, order_id)
        record = _record(_pairs(result[1]))
        assert record is not None
        return record

    # --- outbox -------------------------------------------------------------------------

    async def published(self, event: OutboxEvent, order_id: str) -> None:
        """JetStream acknowledged the order's `created` / `cancelled` event."""
        await self.redis.zrem(self.keys.outbox, _outbox_member(event, order_id))

    async def unpublished(
        self, written_before: datetime, limit: int = 200
    ) -> list[tuple[OutboxEvent, str]]:
        """Creates and cancels written before `written_before` whose event is not known to be
        acknowledged, oldest first: `(event, order_id)`."""
        members = await self.redis.zrangebyscore(
            self.keys.outbox, "-inf", written_before.timestamp(), start=0, num=limit
        )
        pending: list[tuple[OutboxEvent, str]] = []
        for member in members:
            event, _, order_id = _s(member).partition(":")
            pending.append((event, order_id))  # type: ignore[arg-type]
        return pending

    # --- credits ------------------------------------------------------------------------

    async def match_credit(self, credit: Credit, now: datetime) -> MatchOutcome:
        """Pair a credit with the one order it pays, atomically, by the rules below.

        Candidates: orders on the credit's `(mailbox_id, card_last4)` with exactly its amount,
        currency UZS, whose window `[created_at - window_lead_s, expires_at]` contains the bank
        time (minute precision: the bank minute overlaps the window), status `waiting`, or
        `expired` with the amount still quarantined at `now` (then `late=True`).
        One candidate → `matched` (order becomes `paid`); several → `ambiguous` (nothing paid);
        none → `unmatched`; a credit id already decided → `duplicate` with the first outcome's
        record (so a redelivered credit republishes the same events)."""
        return _match_outcome(await self._match(**self._match_call(credit, now)))

    async def match_credits(
        self, credits: list[Credit], now: datetime
    ) -> list[MatchOutcome | Exception]:
        """`match_credit` for many credits in one Redis round trip (a pipeline of the same
        script, each call still atomic on its own card). The result at index i is credit i's
        outcome, or the Redis error of that credit's call (the others are unaffected). A
        connection failure raises for the whole batch."""
        if not credits:
            return []
        calls = [self._match_call(credit, now) for credit in credits]
        results = await self._match.many([(call["keys"], call["args"]) for call in calls])
        return [r if isinstance(r, Exception) else _match_outcome(r) for r in results]

    def _decision_keys(self, credit: Credit) -> tuple[str, str]:
        """The card's `credits` hash (first outcome per credit) and `credits-seen` zset."""
        return (
            self.keys.card(credit.mailbox_id, credit.card_last4, "credits"),
            self.keys.card(credit.mailbox_id, credit.card_last4, "credits-seen"),
        )

    async def restore_decision(self, credit: Credit, outcome: dict, decided_at: datetime) -> bool:
        """Write a credit's decision as `match_credit` stores it (rebuilding Redis from the
        streams), unless the credit is already decided. A `matched` decision (a manual match
        of a credit first decided unmatched) replaces any other: the credit is spent. Returns
        whether it was written."""
        decisions, seen = self._decision_keys(credit)
        if outcome.get("kind") == "matched":
            current = await self.redis.hget(decisions, credit.credit_id)
            if current is not None and json.loads(current).get("kind") != "matched":
                await self.redis.hset(decisions, credit.credit_id, json.dumps(outcome))
                return True
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(decisions, credit.credit_id, json.dumps(outcome))
            pipe.zadd(seen, {credit.credit_id: _ms(decided_at)}, nx=True)
            written, _ = await pipe.execute()
        return bool(written)

    def _match_call(self, credit: Credit, now: datetime) -> dict[str, list]:
        prefix, holds, releases = self._card_keys(credit.mailbox_id, credit.card_last4)
        return {
            "keys": [holds, releases, *self._decision_keys(credit)],
            "args": [
                prefix,
                credit.credit_id,
                credit.amount_tiyin,
                credit.currency.upper(),
                _minute(credit.occurred_at),
                _ms(now),
                self.quarantine_s * 1000,
                self.window_lead_s * 1000,
                self.retention_s,
                self.retention_s * 1000,
            ],
        }

    # --- deadlines ----------------------------------------------------------------------

    def _queue_drop_deadline(self, pipe: Any, where: tuple[str, str], order_id: str) -> None:
        """Remove the order's deadline from its card's shard, and from the unsharded set an
        order made before the shards may still be in."""
        member = self._deadline_member(*where, order_id)
        pipe.zrem(self.keys.deadline_shard_of(*where), member)
        pipe.zrem(self.keys.deadlines, member)

    async def _drop_deadline(self, where: tuple[str, str], order_id: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            self._queue_drop_deadline(pipe, where, order_id)
            await pipe.execute()

    async def due(self, now: datetime, limit: int = 500) -> list[str]:
        """Order ids whose deadline has passed and that may still be waiting (at most `limit`
        from each deadline set)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self.keys.every_deadline_set:
                pipe.zrangebyscore(key, "-inf", now.timestamp(), start=0, num=limit)
            found = await pipe.execute()
        return [_s(m).rsplit(":", 1)[1] for members in found for m in members]

    async def claim_due(self, now: datetime, lease_s: float = 30.0, limit: int = 500) -> list[str]:
        """Like `due`, but moves the claimed deadlines `lease_s` into the future, so another
        scanner replica skips them while this one works; `clear_deadline` when done, else they
        come back after the lease. Each deadline set gives at most its share of `limit`."""
        sets = self.keys.every_deadline_set
        share = max(1, -(-limit // len(sets)))
        args = [now.timestamp(), now.timestamp() + lease_s, share]
        claimed = scripts.first_error(await self._claim_due.many([([key], args) for key in sets]))
        return [_s(m).rsplit(":", 1)[1] for members in claimed for m in members]

    async def clear_deadline(self, order_id: str) -> None:
        where = await self._locate(order_id)
        if where is None:
            for key in self.keys.every_deadline_set:
                stale = [
                    member async for member, _ in self.redis.zscan_iter(key, match=f"*:{order_id}")
                ]
                if stale:
                    await self.redis.zrem(key, *stale)
            return
        await self._drop_deadline(where, order_id)

    async def expire(self, order_id: str, now: datetime) -> OrderRecord | None:
        """`waiting → expired` if still waiting at `now >= expires_at`; returns the record when it
        expired now or had already expired (idempotent), None when it ended otherwise (or is not
        due yet, or unknown)."""
        outcome, _ = await self._transition(self._expire, order_id, now)
        if outcome not in ("ok", "expired"):
            return None
        record = await self.get(order_id)
        return record if record and record.status == "expired" else None
