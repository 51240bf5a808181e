"""The merchant bot's own state: which chat is which merchant, what was already alerted, and a
short-lived projection of recent orders (the candidates offered under an unmatched credit).

The bot holds no merchant, card or order of record: those it reads and changes through the
gateway. What it keeps here is its own (`Keys.bot`, the only keys its Redis user may touch):

- a chat: its language, the merchant it is linked to, that merchant's bot key (encrypted: it
  acts for the merchant), and whether Telegram refused to deliver to it (blocked, deleted);
- alert states (`transition`): the last state alerted per mailbox, merchant quota level...,
  so each state change is told once, also when JetStream redelivers the event;
- recent orders per card, from the ORDERS stream, kept for `order_ttl_s`;
- the subscription purchases the bot created (order id → buyer and tariff).

The chats' links and the purchases are copied to the account journal when one is given (its
own dirty set, `Keys.bot_journal_dirty`), so a rebuild after a Redis loss brings back which
chat is which merchant and which order buys whose subscription. Alert states and the recent
orders are not: a lost one at worst repeats an alert or offers fewer candidates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
from nats.js.kv import KeyValue

from autopay_store.journal import AccountJournal
from autopay_store.keys import Keys
from autopay_store.replies import maybe_text, text_hash, text_set, texts
from autopay_store.secrets import SecretBox


@dataclass(frozen=True)
class BotChat:
    chat_id: int
    language: str | None = None
    merchant_id: str | None = None
    bot_key: str | None = None
    unreachable: str | None = None
    """Why Telegram refuses messages to this chat (blocked the bot, chat deleted), if it does."""


@dataclass(frozen=True)
class MailboxAlertState:
    state: str
    """`ok`, `down` or `auth_failed`"""
    alerted: bool
    """Whether the merchant was told of this state (a short "down" is never told)."""
    gmail: str = ""


@dataclass(frozen=True)
class RecentOrder:
    order_id: str
    merchant_id: str
    mailbox_id: str
    card_last4: str
    amount_tiyin: int
    status: str
    created_at: datetime


@dataclass(frozen=True)
class Purchase:
    order_id: str
    merchant_id: str
    tariff: str
    chat_id: int
    amount_tiyin: int


def bot_journal(
    redis: aioredis.Redis, keys: Keys, bucket: Callable[[], Awaitable[KeyValue]]
) -> AccountJournal:
    """The journal of the bot's own keys: its set of keys left to copy is in its keyspace."""
    return AccountJournal(redis, keys, bucket, dirty_key=keys.bot_journal_dirty)


class MerchantBotStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        secrets: SecretBox,
        order_ttl_s: int = 2 * 86400,
        journal: AccountJournal | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.secrets = secrets
        self.order_ttl_s = order_ttl_s
        self.journal = journal

    async def _record(self, *redis_keys: str) -> None:
        if self.journal is not None:
            await self.journal.record(*redis_keys)

    # --- chats ------------------------------------------------------------------------------
    def _chat(self, chat_id: int) -> str:
        return self.keys.bot("chat", str(chat_id))

    def _merchant(self, merchant_id: str) -> str:
        return self.keys.bot("merchant", merchant_id)

    async def chat(self, chat_id: int) -> BotChat:
        data = text_hash(await self.redis.hgetall(self._chat(chat_id)))
        token = data.get("bot_key")
        return BotChat(
            chat_id=chat_id,
            language=data.get("language") or None,
            merchant_id=data.get("merchant_id") or None,
            bot_key=self.secrets.decrypt(token) if token else None,
            unreachable=data.get("unreachable") or None,
        )

    async def chat_of_merchant(self, merchant_id: str) -> BotChat | None:
        chat_id = maybe_text(await self.redis.get(self._merchant(merchant_id)))
        return await self.chat(int(chat_id)) if chat_id else None

    async def link(self, chat_id: int, merchant_id: str, bot_key: str) -> None:
        """The chat now acts for `merchant_id` with `bot_key` (one chat per merchant)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                self._chat(chat_id),
                mapping={"merchant_id": merchant_id, "bot_key": self.secrets.encrypt(bot_key)},
            )
            pipe.set(self._merchant(merchant_id), str(chat_id))
            pipe.sadd(self.keys.bot("merchants"), merchant_id)
            await pipe.execute()
        await self._record(
            self._chat(chat_id), self._merchant(merchant_id), self.keys.bot("merchants")
        )

    async def set_bot_key(self, chat_id: int, bot_key: str) -> None:
        await self.redis.hset(self._chat(chat_id), "bot_key", self.secrets.encrypt(bot_key))
        await self._record(self._chat(chat_id))

    async def set_language(self, chat_id: int, language: str) -> None:
        await self.redis.hset(self._chat(chat_id), "language", language)
        await self._record(self._chat(chat_id))

    async def mark_unreachable(self, chat_id: int, reason: str) -> None:
        await self.redis.hset(self._chat(chat_id), "unreachable", reason[:200])
        await self._record(self._chat(chat_id))

    async def mark_reachable(self, chat_id: int) -> None:
        await self.redis.hdel(self._chat(chat_id), "unreachable")
        await self._record(self._chat(chat_id))

    async def linked_merchants(self) -> list[str]:
        return sorted(text_set(await self.redis.smembers(self.keys.bot("merchants"))))

    # --- alert states -----------------------------------------------------------------------
    async def transition(self, kind: str, subject: str, state: str) -> str | None:
        """Record `state` as the last alerted state of (kind, subject); returns the previous
        one (None the first time). Atomic, so two deliveries of one event see one change."""
        return maybe_text(
            await self.redis.set(self.keys.bot("state", kind, subject), state, get=True)
        )

    async def state(self, kind: str, subject: str) -> str | None:
        return maybe_text(await self.redis.get(self.keys.bot("state", kind, subject)))

    async def first_time(self, tag: str, ttl_s: int = 30 * 86400) -> bool:
        """True once per `tag` (within `ttl_s`): an alert that must be told only once."""
        return bool(await self.redis.set(self.keys.bot("once", tag), "1", nx=True, ex=ttl_s))

    async def count_webhook_failure(self, merchant_id: str) -> int:
        key = self.keys.bot("webhook-failures", merchant_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 7 * 86400)
            count, _ = await pipe.execute()
        return int(count)

    async def reset_webhook_failures(self, merchant_id: str) -> None:
        await self.redis.delete(self.keys.bot("webhook-failures", merchant_id))

    # --- mailbox health, as last told ---------------------------------------------------------
    async def mailbox_state(self, mailbox_id: str) -> MailboxAlertState | None:
        data = text_hash(await self.redis.hgetall(self.keys.bot("mailbox", mailbox_id)))
        if not data:
            return None
        return MailboxAlertState(data["state"], data.get("alerted") == "1", data.get("gmail", ""))

    async def set_mailbox_state(
        self, mailbox_id: str, state: MailboxAlertState, *, down_since: datetime | None = None
    ) -> None:
        """Store the mailbox's state; `down_since` puts it on the list of mailboxes whose
        "down" is told once it lasted (`down_for_long`), None takes it off."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                self.keys.bot("mailbox", mailbox_id),
                mapping={
                    "state": state.state,
                    "alerted": "1" if state.alerted else "0",
                    "gmail": state.gmail,
                },
            )
            if down_since is not None:
                pipe.zadd(self.keys.bot("mailboxes-down"), {mailbox_id: down_since.timestamp()})
            else:
                pipe.zrem(self.keys.bot("mailboxes-down"), mailbox_id)
            await pipe.execute()

    async def down_for_long(self, since_before: datetime) -> list[str]:
        """Mailboxes that went down before `since_before` and did not come back."""
        return texts(
            await self.redis.zrangebyscore(
                self.keys.bot("mailboxes-down"), "-inf", since_before.timestamp()
            )
        )

    # --- recent orders ----------------------------------------------------------------------
    def _card_orders(self, merchant_id: str, mailbox_id: str, card_last4: str) -> str:
        return self.keys.bot("orders", merchant_id, mailbox_id, card_last4)

    async def remember_order(self, order: RecentOrder) -> None:
        key = self.keys.bot("order", order.order_id)
        index = self._card_orders(order.merchant_id, order.mailbox_id, order.card_last4)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                key,
                mapping={
                    "merchant_id": order.merchant_id,
                    "mailbox_id": order.mailbox_id,
                    "card_last4": order.card_last4,
                    "amount_tiyin": order.amount_tiyin,
                    "status": order.status,
                    "created_at": order.created_at.timestamp(),
                },
            )
            pipe.expire(key, self.order_ttl_s)
            pipe.zadd(index, {order.order_id: order.created_at.timestamp()})
            pipe.expire(index, self.order_ttl_s)
            await pipe.execute()

    async def recent_orders(
        self, merchant_id: str, mailbox_id: str, card_last4: str, since: datetime
    ) -> list[RecentOrder]:
        """The card's orders created since `since`, newest first (any status)."""
        index = self._card_orders(merchant_id, mailbox_id, card_last4)
        ids = texts(await self.redis.zrevrangebyscore(index, "+inf", since.timestamp()))
        found = []
        for order_id in ids:
            data = text_hash(await self.redis.hgetall(self.keys.bot("order", order_id)))
            if data:
                found.append(
                    RecentOrder(
                        order_id=order_id,
                        merchant_id=data["merchant_id"],
                        mailbox_id=data["mailbox_id"],
                        card_last4=data["card_last4"],
                        amount_tiyin=int(data["amount_tiyin"]),
                        status=data["status"],
                        created_at=datetime.fromtimestamp(float(data["created_at"]), UTC),
                    )
                )
        return found

    # --- subscription purchases -------------------------------------------------------------
    async def remember_purchase(self, purchase: Purchase) -> None:
        await self.redis.hset(
            self.keys.bot("purchase", purchase.order_id),
            mapping={
                "merchant_id": purchase.merchant_id,
                "tariff": purchase.tariff,
                "chat_id": purchase.chat_id,
                "amount_tiyin": purchase.amount_tiyin,
            },
        )
        await self._record(self.keys.bot("purchase", purchase.order_id))

    async def purchase(self, order_id: str) -> Purchase | None:
        data = text_hash(await self.redis.hgetall(self.keys.bot("purchase", order_id)))
        if not data:
            return None
        return Purchase(
            order_id=order_id,
            merchant_id=data["merchant_id"],
            tariff=data["tariff"],
            chat_id=int(data["chat_id"]),
            amount_tiyin=int(data["amount_tiyin"]),
        )
