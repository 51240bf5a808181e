"""Use cases of cards: connect (a live card after a verified IMAP login, a sandbox card for a
test key), list with mailbox health, remove; and finding the caller's card in its world."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import structlog

from autopay_contracts import MailboxRegistered, MailboxRemoved, mailbox_id_for, normalize_gmail
from autopay_gateway.adapters.imap_login import ImapLoginChecker
from autopay_gateway.clock import tashkent
from autopay_gateway.messages import ApiError
from autopay_gateway.requests import AddCard
from autopay_gateway.settings import GatewaySettings
from autopay_runtime.cache import MISSING, TtlCache
from autopay_runtime.publishing import EventPublisher, PublishFailed
from autopay_store.accounts import Accounts, Card, CardTaken, MailboxTaken, Merchant
from autopay_store.mailbox_state import MailboxHealth
from autopay_store.ratelimit import RateLimiter
from autopay_store.sandbox import SandboxCards, TooManySandboxCards
from autopay_store.secrets import SecretBox

log = structlog.get_logger("autopay_gateway")


def card_view(card: Card) -> dict[str, Any]:
    return {"id": card.card_id, "card_last4": card.card_last4, "gmail": normalize_gmail(card.gmail)}


def revision_of(now: datetime) -> int:
    return int(now.timestamp() * 1000)


class Cards:
    def __init__(
        self,
        settings: GatewaySettings,
        accounts: Accounts,
        sandbox: SandboxCards,
        health: MailboxHealth,
        imap: ImapLoginChecker,
        limiter: RateLimiter,
        publisher: EventPublisher,
        secrets: SecretBox,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.sandbox = sandbox
        self.health = health
        self.imap = imap
        self.limiter = limiter
        self.publisher = publisher
        self.secrets = secrets
        # (merchant, world, card_last4, mailbox id): every spelling of an address is one entry
        self._cards: TtlCache[tuple[str, bool, str, str], Card] = TtlCache(
            settings.auth_cache_seconds
        )

    async def find(self, merchant: Merchant, card_last4: str, gmail: str) -> Card | None:
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

    async def of(self, merchant: Merchant) -> list[Card]:
        if merchant.test_mode:
            return await self.sandbox.list(merchant.merchant_id)
        return await self.accounts.list_cards(merchant.merchant_id)

    async def my_cards(self, merchant: Merchant) -> dict[str, Any]:
        cards = await self.of(merchant)
        if merchant.test_mode:
            return {"cards": [card_view(card) | {"status": "sandbox"} for card in cards]}
        health = await self.health.read([card.mailbox_id for card in cards])
        result = []
        for card in cards:
            item = card_view(card)
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
        return {"success": True} | card_view(card)

    async def _add_sandbox_card(self, merchant: Merchant, cmd: AddCard) -> dict[str, Any]:
        """A test key's card: in the merchant's sandbox only. No IMAP login, no password kept,
        no mailbox claimed and nothing watched, so a test key can neither squat a live
        mailbox nor change a live card, password or watcher."""
        try:
            card = await self.sandbox.add(merchant.merchant_id, cmd.card_last4, cmd.gmail)
        except TooManySandboxCards:
            raise ApiError(409, "too_many_sandbox_cards") from None
        log.info("sandbox card connected", merchant_id=merchant.merchant_id, card_id=card.card_id)
        return {"success": True} | card_view(card)

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

    async def _mailbox_keeps_cards(self, card: Card) -> bool:
        """Whether the mailbox has a card other than this one (then it stays watched)."""
        mailbox = await self.accounts.mailbox(card.gmail)
        if mailbox is None:
            return False
        return any(
            last4 != card.card_last4 or slot.merchant_id != card.merchant_id
            for last4, slot in mailbox.cards.items()
        )
