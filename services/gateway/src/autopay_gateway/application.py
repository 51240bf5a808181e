"""What the API does, one function per use case; adapters are passed in, the clock too.

Each function takes the authenticated merchant and a validated command and returns the response
payload, or raises `ApiError` with the status and message code of the original service.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from autopay_contracts import (
    MailboxRegistered,
    MailboxRemoved,
    Order,
    OrderCancelled,
    OrderCreated,
    SandboxTransferRequested,
    mailbox_id_for,
    normalize_gmail,
)
from autopay_gateway.adapters.cache import MISSING, TtlCache
from autopay_gateway.adapters.idempotency import IdempotencyStore
from autopay_gateway.adapters.imap_login import ImapLoginChecker
from autopay_gateway.adapters.mailbox_health import MailboxHealthReader
from autopay_gateway.adapters.ratelimit import RateLimiter
from autopay_gateway.clock import tashkent
from autopay_gateway.faults import crash_point
from autopay_gateway.messages import ApiError
from autopay_gateway.requests import AddCard, CreatePayment, SandboxTransfer
from autopay_gateway.requests import Settings as SettingsCommand
from autopay_gateway.settings import GatewaySettings
from autopay_gateway.transactions import Transactions
from autopay_gateway.webhooks import Webhooks
from autopay_runtime.publishing import EventPublisher, PublishFailed
from autopay_store.accounts import (
    Accounts,
    Card,
    CardTaken,
    MailboxTaken,
    Merchant,
    SubscriptionExhausted,
    hash_api_key,
)
from autopay_store.orders import (
    AmountReserved,
    NoFreeAmount,
    OrderBook,
    OrderRecord,
    TransitionNotAllowed,
)
from autopay_store.sandbox import SandboxCards, TooManySandboxCards
from autopay_store.secrets import SecretBox

log = structlog.get_logger("autopay_gateway")

TIYIN_PER_SOM = 100


@dataclass(frozen=True)
class Caller:
    """An authenticated request: the merchant and which of its keys (for the rate limit)."""

    merchant: Merchant
    key_id: str


# --- pure views ---------------------------------------------------------------------------


def order_view(record: OrderRecord) -> dict[str, Any]:
    order = record.order
    return {
        "order_id": order.order_id,
        "status": record.status,
        "amount": order.amount_tiyin // TIYIN_PER_SOM,
        "card_last4": order.card_last4,
        "gmail": order.gmail,
        "client_user_id": order.client_user_id,
        "client_user_data": order.client_user_data,
        "paid_at": tashkent(record.paid_at) if record.status == "paid" else None,
    }


def subscription_view(merchant: Merchant, now: datetime) -> dict[str, Any]:
    return {
        "active": merchant.active(now),
        "tariff_name": merchant.tariff_name,
        "expires_at": tashkent(merchant.expires_at),
        "payments_used": merchant.payments_used,
        "max_payments": merchant.max_payments,
    }


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


def _card_view(card: Card) -> dict[str, Any]:
    return {"id": card.card_id, "card_last4": card.card_last4, "gmail": normalize_gmail(card.gmail)}


def revision_of(now: datetime) -> int:
    return int(now.timestamp() * 1000)


# --- use cases ----------------------------------------------------------------------------


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        accounts: Accounts,
        orders: OrderBook,
        publisher: EventPublisher,
        idempotency: IdempotencyStore,
        limiter: RateLimiter,
        health: MailboxHealthReader,
        imap: ImapLoginChecker,
        secrets: SecretBox,
        sandbox: SandboxCards,
        transactions: Transactions,
        webhooks: Webhooks,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.orders = orders
        self.publisher = publisher
        self.idempotency = idempotency
        self.limiter = limiter
        self.health = health
        self.imap = imap
        self.secrets = secrets
        self.sandbox = sandbox
        self.transactions = transactions
        self.webhooks = webhooks
        self._merchants: TtlCache[str, Merchant | None] = TtlCache(settings.auth_cache_seconds)
        # (merchant, world, card_last4, mailbox id): every spelling of an address is one entry
        self._cards: TtlCache[tuple[str, bool, str, str], Card] = TtlCache(
            settings.auth_cache_seconds
        )
        self._tails = range(TIYIN_PER_SOM, (settings.free_tail_max + 1) * TIYIN_PER_SOM, 100)
        self._tasks: set[asyncio.Task[None]] = set()

    # --- access ---------------------------------------------------------------------------
    async def authenticate(self, api_key: str | None, client_address: str) -> Caller:
        """The caller of a valid key. A missing or wrong key is 401, and is counted against the
        client's address: past `failed_auth_burst` failures (refilled at `failed_auth_per_s`)
        that address gets 429 instead, so keys cannot be guessed at speed. Only valid keys
        enter the cache, so wrong ones can neither fill it nor push valid ones out."""
        merchant = None
        key_hash = hash_api_key(api_key) if api_key else None
        if key_hash is not None:
            merchant = self._merchants.get(key_hash)
            if merchant is MISSING:
                merchant = await self.accounts.authenticate(api_key)
                if merchant is not None:
                    self._merchants.put(key_hash, merchant)
        if merchant is None or key_hash is None:
            await self._count_failed_auth(client_address)
            raise ApiError(401, "unauthorized")
        assert isinstance(merchant, Merchant)
        return Caller(merchant, key_hash[:32])

    async def _count_failed_auth(self, client_address: str) -> None:
        wait = await self.limiter.take(
            f"auth-failures:{client_address}",
            self.settings.failed_auth_per_s,
            self.settings.failed_auth_burst,
            time.time(),
        )
        if wait > 0:
            retry_after = str(max(1, int(wait + 0.999)))
            raise ApiError(429, "rate_limited", headers={"Retry-After": retry_after})

    def require_subscription(self, merchant: Merchant, now: datetime) -> None:
        """403 before any parameter is looked at (the order of checks): an inactive or used-up
        subscription, as the merchant was read at authentication (at most `auth_cache_seconds`
        old). The atomic payment slot taken at create stays the authority."""
        if not merchant.active(now):
            raise ApiError(403, "no_subscription")
        if merchant.payments_used >= merchant.max_payments:
            raise ApiError(403, "limit_reached")

    async def throttle(self, caller: Caller) -> None:
        merchant = caller.merchant
        wait = await self.limiter.take(
            caller.key_id, merchant.rate_per_s, merchant.rate_burst, time.time()
        )
        if wait > 0:
            retry_after = str(max(1, int(wait + 0.999)))
            raise ApiError(429, "rate_limited", headers={"Retry-After": retry_after})

    async def _find_card(self, merchant: Merchant, card_last4: str, gmail: str) -> Card | None:
        """The caller's card in the caller's world: a test key sees only sandbox cards."""
        mid, test = merchant.merchant_id, merchant.test_mode
        key = (mid, test, card_last4, mailbox_id_for(gmail))
        card = self._cards.get(key)
        if card is MISSING:
            if test:
                card = await self.sandbox.find(mid, card_last4, gmail)
            else:
                card = await self.accounts.find_card(mid, card_last4, gmail)
            if card is not None:
                self._cards.put(key, card)
        return card  # type: ignore[return-value]

    async def _cards_of(self, merchant: Merchant) -> list[Card]:
        if merchant.test_mode:
            return await self.sandbox.list(merchant.merchant_id)
        return await self.accounts.list_cards(merchant.merchant_id)

    # --- payments -------------------------------------------------------------------------
    async def create_payment(
        self, merchant: Merchant, cmd: CreatePayment, now: datetime
    ) -> dict[str, Any]:
        mid = merchant.merchant_id
        card = await self._find_card(merchant, cmd.card_last4, cmd.gmail)
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
            # Off the request's path: a lost removal only makes the sweep publish it again.
            self._background(self.orders.published("created", order.order_id))
            log.info("payment created", amount_tiyin=order.amount_tiyin, test_mode=order.test_mode)
        result: dict[str, Any] = {"success": True, "order_id": order.order_id}
        if cmd.amount_base is not None:
            result["amount"] = order.amount_tiyin // TIYIN_PER_SOM
        return result

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

    # --- settings -------------------------------------------------------------------------
    async def get_settings(self, merchant: Merchant) -> dict[str, Any]:
        fresh = await self.accounts.get_merchant(merchant.merchant_id) or merchant
        return {"webhook_url": fresh.webhook_url, "notify_events": list(fresh.notify_events)}

    async def put_settings(self, merchant: Merchant, cmd: SettingsCommand) -> dict[str, Any]:
        """Merchant-wide defaults for payments created without `webhook_url` / `notify_events`
        (applied within `auth_cache_seconds`, the age of a cached merchant)."""
        updated = await self.accounts.set_settings(
            merchant.merchant_id, webhook_url=cmd.webhook_url, notify_events=cmd.notify_events
        )
        self._merchants.clear()
        return {
            "success": True,
            "webhook_url": updated.webhook_url,
            "notify_events": list(updated.notify_events),
        }

    # --- account --------------------------------------------------------------------------
    async def subscription(self, merchant: Merchant, now: datetime) -> dict[str, Any]:
        fresh = await self.accounts.get_merchant(merchant.merchant_id) or merchant
        return subscription_view(fresh, now)

    async def my_cards(self, merchant: Merchant) -> dict[str, Any]:
        cards = await self._cards_of(merchant)
        if merchant.test_mode:
            return {"cards": [_card_view(card) | {"status": "sandbox"} for card in cards]}
        health = await self.health.read([card.mailbox_id for card in cards])
        result = []
        for card in cards:
            item = _card_view(card)
            known = health.get(card.mailbox_id)
            if known is not None and known.status:
                item["status"] = known.status
            if known is not None and known.last_mail_at:
                item["last_mail_at"] = tashkent(known.last_mail_at)
            result.append(item)
        return {"cards": result}

    async def _limit_login_checks(self, merchant_id: str, mailbox_id: str) -> None:
        """At most `login_checks_per_minute` IMAP logins per merchant and per mailbox (429
        past that), so no merchant can make the platform log in to Gmail at speed, whether to
        guess a password or to get a mailbox throttled by Google."""
        rate = self.settings.login_checks_per_minute / 60.0
        burst = self.settings.login_checks_per_minute
        now = time.time()
        for bucket in (f"login-checks:merchant:{merchant_id}", f"login-checks:{mailbox_id}"):
            wait = await self.limiter.take(bucket, rate, burst, now)
            if wait > 0:
                retry_after = str(max(1, int(wait + 0.999)))
                raise ApiError(429, "login_checks_limited", headers={"Retry-After": retry_after})

    async def add_card(self, merchant: Merchant, cmd: AddCard, now: datetime) -> dict[str, Any]:
        mid = merchant.merchant_id
        if merchant.test_mode:
            return await self._add_sandbox_card(merchant, cmd)
        assert cmd.app_password is not None  # required of a live key by `requests.add_card`
        await self._limit_login_checks(mid, mailbox_id_for(cmd.gmail))
        verdict = await self.imap.check(cmd.gmail, cmd.app_password)
        if verdict != "ok":
            log.info("card rejected: mailbox login failed", verdict=verdict, merchant_id=mid)
            code = "imap_auth_failed" if verdict == "auth_failed" else "imap_unreachable"
            raise ApiError(400, code)
        try:
            card = await self.accounts.add_card(
                mid, cmd.card_last4, cmd.gmail, cmd.app_password, aliases=cmd.aliases
            )
        except CardTaken:
            raise ApiError(409, "card_taken") from None
        except MailboxTaken:
            log.info("card rejected: mailbox owned by another merchant", merchant_id=mid)
            raise ApiError(409, "mailbox_taken") from None
        mailbox = await self.accounts.mailbox(card.gmail)
        event = MailboxRegistered(
            mailbox_id=card.mailbox_id,
            gmail=card.gmail,
            revision=revision_of(now),
            imap_host=self.settings.imap_host,
            imap_port=self.settings.imap_port,
            imap_tls=self.settings.imap_tls,
            username=card.gmail,
            password_encrypted=self.secrets.encrypt(cmd.app_password),
            aliases=mailbox.aliases if mailbox else (),
        )
        with structlog.contextvars.bound_contextvars(mailbox_id=card.mailbox_id):
            try:
                await self.publisher.publish(event)
            except PublishFailed as exc:
                # The card is stored; repeating the call is idempotent and republishes.
                log.error("mailbox registration not acknowledged", error=str(exc))
                raise ApiError(503, "unavailable") from None
            log.info("card connected", merchant_id=mid, card_id=card.card_id)
        return {"success": True} | _card_view(card)

    async def _add_sandbox_card(self, merchant: Merchant, cmd: AddCard) -> dict[str, Any]:
        """A test key's card: in the merchant's sandbox only. No IMAP login, no password kept,
        no mailbox claimed and nothing watched, so a test key can neither squat a live
        mailbox nor change a live card, password or watcher."""
        try:
            card = await self.sandbox.add(merchant.merchant_id, cmd.card_last4, cmd.gmail)
        except TooManySandboxCards:
            raise ApiError(409, "too_many_sandbox_cards") from None
        log.info("sandbox card connected", merchant_id=merchant.merchant_id, card_id=card.card_id)
        return {"success": True} | _card_view(card)

    async def remove_card(self, merchant: Merchant, card_id: int, now: datetime) -> dict[str, Any]:
        mid = merchant.merchant_id
        if merchant.test_mode:
            removed = await self.sandbox.remove(mid, card_id)
            if removed is None:
                raise ApiError(404, "card_not_found")
            self._cards.discard((mid, True, removed.card_last4, mailbox_id_for(removed.gmail)))
            return {"success": True, "id": card_id}
        card = next((c for c in await self.accounts.list_cards(mid) if c.card_id == card_id), None)
        if card is None:
            raise ApiError(404, "card_not_found")
        with structlog.contextvars.bound_contextvars(mailbox_id=card.mailbox_id):
            # Published before the card goes, so a failed publish leaves everything retryable.
            if not await self._mailbox_keeps_cards(card):
                event = MailboxRemoved(
                    mailbox_id=card.mailbox_id,
                    gmail=normalize_gmail(card.gmail),
                    revision=revision_of(now),
                )
                try:
                    await self.publisher.publish(event)
                except PublishFailed as exc:
                    log.error("mailbox removal not acknowledged", error=str(exc))
                    raise ApiError(503, "unavailable") from None
            await self.accounts.remove_card(mid, card_id)
            self._cards.discard((mid, False, card.card_last4, mailbox_id_for(card.gmail)))
            log.info("card removed", merchant_id=mid, card_id=card_id)
        return {"success": True, "id": card_id}

    # --- sandbox ----------------------------------------------------------------------------
    async def sandbox_transfer(
        self, merchant: Merchant, cmd: SandboxTransfer, now: datetime
    ) -> dict[str, Any]:
        """A simulated incoming transfer to a sandbox card. Mail-ingest builds the bank e-mail
        and reads it with the real parser; the matcher and the notifier then treat the credit
        as any other, within the sandbox world. A live key gets 403."""
        if not merchant.test_mode:
            raise ApiError(403, "sandbox_only")
        card = await self._find_card(merchant, cmd.card_last4, cmd.gmail)
        if card is None:
            raise ApiError(400, "card_not_connected")
        transfer_id = "sbx" + uuid.uuid4().hex
        event = SandboxTransferRequested(
            transfer_id=transfer_id,
            merchant_id=merchant.merchant_id,
            gmail=card.gmail,
            card_last4=card.card_last4,
            amount_tiyin=cmd.amount * TIYIN_PER_SOM,
            requested_at=now,
        )
        try:
            await self.publisher.publish_acked(event, self.settings.publish_attempts)
        except PublishFailed as exc:
            log.error("sandbox transfer not acknowledged", error=str(exc))
            raise ApiError(503, "unavailable") from None
        log.info("sandbox transfer requested", merchant_id=merchant.merchant_id)
        return {
            "success": True,
            "test": True,
            "transfer_id": transfer_id,
            "amount": cmd.amount,
            "card_last4": card.card_last4,
            "gmail": card.gmail,
        }

    async def _mailbox_keeps_cards(self, card: Card) -> bool:
        """Whether the mailbox has a card other than this one (then it stays watched)."""
        mailbox = await self.accounts.mailbox(card.gmail)
        if mailbox is None:
            return False
        return any(
            last4 != card.card_last4 or slot.merchant_id != card.merchant_id
            for last4, slot in mailbox.cards.items()
        )
