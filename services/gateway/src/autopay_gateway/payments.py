"""Use cases of payments (the original API): create, check, cancel.

Create and cancel write the order book, then publish their event with the deterministic
Msg-Id, retrying that same id (the outbox and `republish.py` cover a crash in between).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from autopay_contracts import Order, OrderCancelled, OrderCreated, mailbox_id_for, normalize_gmail
from autopay_contracts.money import TIYIN_PER_SOM, whole_som
from autopay_contracts.order_json import order_json
from autopay_gateway import metrics
from autopay_gateway.cards import Cards
from autopay_gateway.clock import tashkent
from autopay_gateway.faults import crash_point
from autopay_gateway.messages import ApiError
from autopay_gateway.requests import CreatePayment
from autopay_gateway.settings import GatewaySettings
from autopay_runtime import tracing
from autopay_runtime.publishing import EventPublisher, PublishFailed
from autopay_store.accounts import Accounts, Card, Merchant, SubscriptionExhausted
from autopay_store.orders import (
    AmountReserved,
    NoFreeAmount,
    OrderBook,
    OrderRecord,
    TransitionNotAllowed,
)

log = structlog.get_logger("autopay_gateway")


def order_view(record: OrderRecord) -> dict[str, Any]:
    paid_at = tashkent(record.paid_at) if record.status == "paid" else None
    return order_json(record.order, status=record.status, paid_at=paid_at)


def new_order(
    order_id: str,
    merchant: Merchant,
    card: Card,
    cmd: CreatePayment,
    now: datetime,
    ttl_s: int,
) -> Order:
    amount = cmd.amount if cmd.amount is not None else cmd.amount_base
    assert amount is not None
    gmail = normalize_gmail(card.gmail)
    # A test order lives under its sandbox card's mailbox id, a live one under the mailbox's.
    return Order(
        order_id=order_id,
        merchant_id=merchant.merchant_id,
        mailbox_id=card.mailbox_id if merchant.test_mode else mailbox_id_for(gmail),
        gmail=gmail,
        card_last4=card.card_last4,
        amount_tiyin=amount * TIYIN_PER_SOM,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
        client_user_id=cmd.client_user_id,
        client_user_data=cmd.client_user_data,
        webhook_url=cmd.webhook_url or merchant.webhook_url,
        notify_events=cmd.notify_events or merchant.notify_events,
        test_mode=merchant.test_mode,
    )


@dataclass(frozen=True)
class Idempotent:
    """A create made under an `Idempotency-Key`: `bind` ties the key to the new order's id
    before the order is written; `resumed_order_id` is the order a call that died had bound
    (its retry answers with that order, if it was written, instead of making another)."""

    bind: Callable[[str], Awaitable[None]]
    resumed_order_id: str | None = None


def _created(order: Order, cmd: CreatePayment) -> dict[str, Any]:
    """The answer to a create: the order id, and the amount when the server chose its tail."""
    result: dict[str, Any] = {"success": True, "order_id": order.order_id}
    if cmd.amount_base is not None:
        result["amount"] = whole_som(order.amount_tiyin)
    return result


class Payments:
    def __init__(
        self,
        settings: GatewaySettings,
        accounts: Accounts,
        orders: OrderBook,
        publisher: EventPublisher,
        cards: Cards,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.orders = orders
        self.publisher = publisher
        self.cards = cards
        self._tails = range(TIYIN_PER_SOM, (settings.free_tail_max + 1) * TIYIN_PER_SOM, 100)
        self._tasks: set[asyncio.Task[None]] = set()

    async def create_payment(
        self,
        merchant: Merchant,
        cmd: CreatePayment,
        now: datetime,
        idempotent: Idempotent | None = None,
    ) -> dict[str, Any]:
        mid = merchant.merchant_id
        card = await self.cards.find(merchant, cmd.card_last4, cmd.gmail)
        if idempotent is not None and idempotent.resumed_order_id is not None and card:
            resumed = idempotent.resumed_order_id
            where = new_order(resumed, merchant, card, cmd, now, self.settings.payment_ttl_seconds)
            made = await self.orders.find_on_card(where.mailbox_id, where.card_last4, resumed)
            if made is not None and made.order.merchant_id == mid:
                # The call that died wrote it: its pointers and its `order.created` (through the
                # outbox) are made sure of, and the retry gets the answer that call was due.
                await self.orders.repair(made.order)
                log.info("create resumed after a call that failed", order_id=resumed)
                return _created(made.order, cmd)
        if card is None:
            raise ApiError(400, "card_not_connected")
        # One round trip: the slot and the id are independent, so both go out together (the
        # id of a refused request is simply skipped, as the id of a 409 already is).
        used, order_id = await asyncio.gather(
            self.accounts.use_payment(mid, now),
            self.orders.next_order_id(),
            return_exceptions=True,
        )
        if isinstance(used, SubscriptionExhausted):
            code = "no_subscription" if used.reason == "inactive" else "limit_reached"
            raise ApiError(403, code)
        if isinstance(used, BaseException):
            raise used
        try:
            if isinstance(order_id, BaseException):
                raise order_id
            if idempotent is not None:
                await idempotent.bind(order_id)
            order = new_order(order_id, merchant, card, cmd, now, self.settings.payment_ttl_seconds)
            if cmd.amount_base is None:
                record = await self.orders.create(order)
            else:
                record = await self.orders.create_with_free_tail(
                    order, cmd.amount_base * TIYIN_PER_SOM, self._tails
                )
        except AmountReserved:
            await self._release(mid)
            raise ApiError(409, "amount_reserved") from None
        except NoFreeAmount:
            await self._release(mid)
            raise ApiError(409, "no_free_amount") from None
        except BaseException:
            await self._release(mid)
            raise
        order = record.order
        with structlog.contextvars.bound_contextvars(order_id=order.order_id, merchant_id=mid):
            crash_point(self.settings.test_crash_point, "create-after-write")
            try:
                await self.publisher.publish_acked(
                    OrderCreated(order=order), self.settings.publish_attempts
                )
            except PublishFailed as exc:
                await self._withdraw(order, now, exc)
                await self._release(mid)
                raise ApiError(503, "unavailable") from None
            crash_point(self.settings.test_crash_point, "create-after-publish")
            metrics.order_created(order.test_mode)
            if created_in := tracing.traceparent():  # the credit's trace will link to it
                self._background(self.orders.remember_trace(order, created_in))
            # Off the request's path: a lost removal only makes the sweep publish it again.
            self._background(self.orders.published("created", order.order_id))
            log.info("payment created", amount_tiyin=order.amount_tiyin, test_mode=order.test_mode)
        return _created(order, cmd)

    async def _withdraw(self, order: Order, now: datetime, exc: PublishFailed) -> None:
        """`order.created` was never acknowledged: the order must not stay payable. Refused by
        every attempt, it was stored nowhere, and the order is voided. Otherwise it may be in
        the stream: the order is cancelled instead (the outbox then publishes `order.created`
        and `order.cancelled`), so the stream, a rebuild and Redis all end at `cancelled`."""
        if exc.refused:
            log.error("order.created refused by JetStream; order voided", error=str(exc))
            with contextlib.suppress(Exception):
                await self.orders.void(order.order_id)
            return
        log.error("order.created not acknowledged; order cancelled", error=str(exc))
        try:
            await self.orders.cancel(order.order_id, now)
        except Exception:
            log.exception("could not cancel an unacknowledged order")

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background write failed", error=type(task.exception()).__name__)

    async def _release(self, merchant_id: str) -> None:
        try:
            await self.accounts.release_payment(merchant_id)
        except Exception:
            log.exception("could not release a payment slot", merchant_id=merchant_id)

    async def _own_order(self, merchant: Merchant, order_id: str) -> OrderRecord:
        """The caller's order in the caller's world: a test key cannot see or cancel a live
        order, nor a live key a test one (404, as for another merchant's)."""
        record = await self.orders.get(order_id)
        if (
            record is None
            or record.order.merchant_id != merchant.merchant_id
            or record.order.test_mode != merchant.test_mode
        ):
            raise ApiError(404, "order_not_found")
        return record

    async def check_payment(self, merchant: Merchant, order_id: str) -> dict[str, Any]:
        return order_view(await self._own_order(merchant, order_id))

    async def cancel_payment(
        self, merchant: Merchant, order_id: str, now: datetime
    ) -> dict[str, Any]:
        await self._own_order(merchant, order_id)
        try:
            record = await self.orders.cancel(order_id, now)
        except TransitionNotAllowed as exc:
            raise ApiError(409, "cannot_cancel", status=exc.status) from None
        except KeyError:
            raise ApiError(404, "order_not_found") from None
        with structlog.contextvars.bound_contextvars(order_id=order_id):
            crash_point(self.settings.test_crash_point, "cancel-after-write")
            event = OrderCancelled(order=record.order, cancelled_at=record.ended_at or now)
            try:
                await self.publisher.publish_acked(event, self.settings.publish_attempts)
            except PublishFailed as exc:
                # The order is cancelled in the book and its outbox entry stays: the sweep
                # (`republish`) publishes the event, and a retry of this call does too.
                log.error("order.cancelled not acknowledged", error=str(exc))
                raise ApiError(503, "unavailable") from None
            crash_point(self.settings.test_crash_point, "cancel-after-publish")
            await self.orders.published("cancelled", order_id)
            log.info("payment cancelled")
        return {"success": True, "order_id": order_id, "status": "cancelled"}
