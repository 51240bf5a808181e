"""The order book: orders, amount reservations and every order transition, atomic in Redis.

Invariants (SPEC §3) enforced here, each transition a single Lua script on one card's hash tag:
- an amount is held on a `(mailbox, card)` while an order waits and for `quarantine_s` after it
  ends; another order (of any merchant) asking for it gets `AmountReserved`;
- `waiting → paid | expired | cancelled` happens once; a credit pays at most one order and an
  order is paid by at most one credit; replaying the same credit returns the first outcome;
- a late credit (bank time inside the window, mail after the deadline) pays an `expired` order
  while its amount is still quarantined (`late=True`).

INTERFACE FIRST: the signatures below are the contract the gateway and the matcher code against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import redis.asyncio as aioredis

from autopay_contracts import Credit, Order
from autopay_store.keys import Keys

OrderStatus = Literal["waiting", "paid", "expired", "cancelled"]
MatchKind = Literal["matched", "unmatched", "ambiguous", "duplicate"]


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


@dataclass(frozen=True)
class MatchOutcome:
    kind: MatchKind
    record: OrderRecord | None = None
    candidate_order_ids: tuple[str, ...] = field(default_factory=tuple)
    reason: str | None = None


class OrderBook:
    """All order state. Times are passed in (never read from a clock inside) for testability."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        quarantine_s: int = 900,
        window_lead_s: int = 60,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.quarantine_s = quarantine_s
        self.window_lead_s = window_lead_s

    async def next_order_id(self) -> str:
        """Next id of the global sequence: "10001", "10002", ..."""
        raise NotImplementedError

    async def create(self, order: Order) -> OrderRecord:
        """Reserve `order.amount_tiyin` on its card and store the order `waiting`.

        Raises `AmountReserved` when the amount is held on that card. Schedules its deadline.
        """
        raise NotImplementedError

    async def create_with_free_tail(
        self, order: Order, base_amount_tiyin: int, tails: range = range(100, 10000, 100)
    ) -> OrderRecord:
        """Server-side unique amount: `order.amount_tiyin` is replaced by the first free
        `base + tail` (tails in tiyin; default 1..99 so'm), chosen atomically.
        Raises `NoFreeAmount` when none is free."""
        raise NotImplementedError

    async def get(self, order_id: str) -> OrderRecord | None:
        raise NotImplementedError

    async def cancel(self, order_id: str, at: datetime) -> OrderRecord:
        """`waiting → cancelled`; idempotent on an already cancelled order.
        Raises `TransitionNotAllowed` for paid/expired orders, KeyError when unknown."""
        raise NotImplementedError

    async def void(self, order_id: str) -> None:
        """Undo a `create` whose `order.created` event could not be published: the order and its
        reservation disappear as if never made. Only valid while still `waiting`."""
        raise NotImplementedError

    async def match_credit(self, credit: Credit, now: datetime) -> MatchOutcome:
        """Pair a credit with the one order it pays (SPEC §3 rules 1-5), atomically.

        Candidates: orders on the credit's `(mailbox_id, card_last4)` with exactly its amount,
        currency UZS, whose window `[created_at - window_lead_s, expires_at]` contains the bank
        time (minute precision: the bank minute overlaps the window), status `waiting`, or
        `expired` with the amount still quarantined (then `late=True`).
        One candidate → `matched` (order becomes `paid`); several → `ambiguous` (nothing paid);
        none → `unmatched`; a credit id already decided → `duplicate` with the first outcome's
        record (so a redelivered credit republishes the same events)."""
        raise NotImplementedError

    async def due(self, now: datetime, limit: int = 500) -> list[str]:
        """Order ids whose deadline has passed and that may still be waiting."""
        raise NotImplementedError

    async def expire(self, order_id: str, now: datetime) -> OrderRecord | None:
        """`waiting → expired` if still waiting at `now >= expires_at`; returns the record when it
        expired now or had already expired (idempotent), None when it ended otherwise."""
        raise NotImplementedError
