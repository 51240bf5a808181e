"""The Redis key schema, in one place."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

DEADLINE_SHARDS = 16
"""Fixed: a card's shard is derived from it, so every process must agree on the count."""


def glob_escape(value: str) -> str:
    """`value` as a literal inside a SCAN/KEYS match pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in value)


@dataclass(frozen=True)
class Keys:
    prefix: str = "ap"

    # --- per card: one hash tag, so the order book's Lua scripts stay in one slot ----------
    @staticmethod
    def card_tag(mailbox_id: str, card_last4: str) -> str:
        return f"{{c:{mailbox_id}:{card_last4}}}"

    def card(self, mailbox_id: str, card_last4: str, suffix: str) -> str:
        return f"{self.prefix}:{self.card_tag(mailbox_id, card_last4)}:{suffix}"

    def order(self, mailbox_id: str, card_last4: str, order_id: str) -> str:
        return self.card(mailbox_id, card_last4, f"order:{order_id}")

    def order_trace(self, mailbox_id: str, card_last4: str, order_id: str) -> str:
        """The `traceparent` of the request that created the order (kept while tracing is on)."""
        return self.card(mailbox_id, card_last4, f"order:{order_id}:trace")

    # --- global -----------------------------------------------------------------------------
    def order_locator(self, order_id: str) -> str:
        """order id → `<mailbox_id>:<card_last4>`, to find an order's card from its id alone."""
        return f"{self.prefix}:order-card:{order_id}"

    @property
    def order_sequence(self) -> str:
        return f"{self.prefix}:seq:order"

    @property
    def deadlines(self) -> str:
        """ZSET of `<mailbox_id>:<card_last4>:<order_id>` scored by expiry time (epoch s): the
        one set of the deadlines before they were sharded, still read until it is empty."""
        return f"{self.prefix}:deadlines"

    def deadline_shard(self, shard: int) -> str:
        """One of `DEADLINE_SHARDS` ZSETs like `deadlines`; a card's orders go to one shard
        (`deadline_shard_of`), so no single key takes every create of a Redis Cluster."""
        return f"{self.prefix}:deadlines:{shard}"

    def deadline_shard_of(self, mailbox_id: str, card_last4: str) -> str:
        shard = zlib.crc32(f"{mailbox_id}:{card_last4}".encode()) % DEADLINE_SHARDS
        return self.deadline_shard(shard)

    @property
    def every_deadline_set(self) -> list[str]:
        """The shards and the unsharded set of older data: where a scanner looks."""
        return [self.deadlines, *(self.deadline_shard(i) for i in range(DEADLINE_SHARDS))]

    @property
    def outbox(self) -> str:
        """ZSET of `<event>:<order_id>` (`created`, `cancelled`) scored by when (epoch s): an
        order transition written to Redis whose event JetStream has not acknowledged yet."""
        return f"{self.prefix}:outbox"

    def tariff(self, name: str) -> str:
        return f"{self.prefix}:tariff:{name}"

    @property
    def tariffs(self) -> str:
        """Set of the tariff names."""
        return f"{self.prefix}:tariffs"

    def invite(self, code: str) -> str:
        """Hash of an invite code (`autopay_store.invites`): its uses, remaining uses, expiry."""
        return f"{self.prefix}:invite:{code}"

    def subscription_order(self, order_id: str) -> str:
        """The merchant whose subscription the paid order `order_id` extended (set once, never
        changed: one order extends one merchant)."""
        return f"{self.prefix}:subscription-order:{order_id}"

    def subscription_orders(self, merchant_id: str) -> str:
        """Set of the order ids applied to a merchant's subscription. Its hash tag is the whole
        name of the merchant's record (`merchant(merchant_id)`, which has no tag), so both are
        in one Cluster slot and one script updates them together."""
        return f"{self.prefix}:subscription-orders:{{{self.merchant(merchant_id)}}}"

    def ledger(self, merchant_id: str, suffix: str) -> str:
        """A merchant's transactions ledger (`autopay_store.ledger`), one hash tag per merchant."""
        return f"{self.prefix}:{{l:{merchant_id}}}:{suffix}"

    def merchant(self, merchant_id: str, suffix: str = "") -> str:
        tail = f":{suffix}" if suffix else ""
        return f"{self.prefix}:merchant:{merchant_id}{tail}"

    def api_key(self, key_hash: str) -> str:
        return f"{self.prefix}:api-key:{key_hash}"

    def idempotency(self, merchant_id: str, digest: str) -> str:
        """An `Idempotency-Key` record (`autopay_store.idempotency`): `digest` is the SHA-256
        of the client's key, so any key the client sends makes a short, safe name."""
        return self.merchant(merchant_id, f"idem:{digest}")

    def rate_limit(self, key_id: str) -> str:
        """The token bucket of one API key (`autopay_store.ratelimit`)."""
        return f"{self.prefix}:ratelimit:{key_id}"

    def merchant_cards(self, merchant_id: str) -> str:
        """Hash card id → card JSON of one merchant."""
        return self.merchant(merchant_id, "cards")

    @property
    def merchant_sequence(self) -> str:
        return f"{self.prefix}:seq:merchant"

    @property
    def card_sequence(self) -> str:
        return f"{self.prefix}:seq:card"

    def sandbox_cards(self, merchant_id: str) -> str:
        """Hash `<card_last4>:<gmail>` → card JSON of one merchant's sandbox cards."""
        return self.merchant(merchant_id, "sandbox-cards")

    # --- per mailbox (the mailbox id is the digest of the normalized address) ---------------
    def card_owner(self, mailbox_id: str, card_last4: str) -> str:
        """`<merchant_id>:<card_id>` of the card `card_last4` on this mailbox."""
        return f"{self.prefix}:card-owner:{mailbox_id}:{card_last4}"

    def mailbox_owner(self, mailbox_id: str) -> str:
        """Hash: the merchant that owns the mailbox, its cards, aliases and app password."""
        return f"{self.prefix}:mailbox-owner:{mailbox_id}"

    def mailbox(self, mailbox_id: str, *parts: str) -> str:
        """mail-ingest's state of a mailbox (`autopay_store.mailbox_state`): the named keys
        below. Only for what all of them share: a SCAN pattern, moving them to a new id."""
        return ":".join([self.prefix, "mailbox", mailbox_id, *parts])

    def mailbox_cursor(self, mailbox_id: str) -> str:
        """Hash `uidvalidity`, `last_uid`: how far mail-ingest has read the mailbox."""
        return self.mailbox(mailbox_id, "cursor")

    def mailbox_lease(self, mailbox_id: str) -> str:
        """The id of the mail-ingest replica watching the mailbox (expires unless renewed).
        Its hash tag is the whole name of the mailbox's cursor (which has no tag), so both are
        in one Cluster slot and `cursor_save.lua` checks the lease as it moves the cursor."""
        return f"{self.mailbox(mailbox_id, 'lease')}:{{{self.mailbox_cursor(mailbox_id)}}}"

    def mailbox_health(self, mailbox_id: str) -> str:
        """Hash: the mailbox's connection status and counters, as mail-ingest last saw them."""
        return self.mailbox(mailbox_id, "health")

    def mailbox_seen(self, mailbox_id: str, marker: str) -> str:
        """A dedup marker: `mid:<Message-ID>`, `raw:<digest>` or `fp:<credit fingerprint>`."""
        return self.mailbox(mailbox_id, "seen", marker)

    def mailbox_evidence(self, mailbox_id: str, digest: str) -> str:
        """A bank mail's RFC 822 bytes; events carry this key as their `evidence_ref`."""
        return self.mailbox(mailbox_id, "evidence", digest)

    @property
    def ingest_replicas(self) -> str:
        """ZSET of the live mail-ingest replicas, scored by when their heartbeat expires."""
        return f"{self.prefix}:ingest:replicas"

    def mailbox_password(self, mailbox_id: str) -> str:
        """Where an app password was stored before the mailbox-owner record held it."""
        return self.mailbox(mailbox_id, "app-password")

    def migration(self, name: str) -> str:
        """Set once the data migration `name` has run."""
        return f"{self.prefix}:migration:{name}"

    # --- the matcher's reconciler (per stream it reconciles) --------------------------------
    def reconcile_watermark(self, stream: str) -> str:
        """Stream sequence up to which every received credit is known to have a decision."""
        return f"{self.prefix}:reconcile:{stream}:watermark"

    def reconcile_lease(self, stream: str) -> str:
        """Held by the one matcher replica running a reconciler pass over `stream`."""
        return f"{self.prefix}:reconcile:{stream}:lease"

    # --- the account journal (`autopay_store.journal`) -----------------------------------------
    @property
    def journal_dirty(self) -> str:
        """Set of account keys changed in Redis whose durable copy is not written yet."""
        return f"{self.prefix}:journal:dirty"

    def unprefixed(self, key: str) -> str:
        """`key` without this prefix (the same key under another prefix has the same name)."""
        head = f"{self.prefix}:"
        return key[len(head) :] if key.startswith(head) else key

    # --- the merchant bot's own state (`autopay_store.merchant_bot`) --------------------------
    def bot(self, *parts: str) -> str:
        """The merchant bot's keys: its chats, alert states and order projection. The bot's
        Redis user may touch these and nothing else (`service_keyspace`)."""
        return ":".join([self.prefix, "bot", *parts])

    @property
    def bot_journal_dirty(self) -> str:
        """The bot's own set of changed keys not yet copied to the journal (its Redis user
        may not touch `journal_dirty`)."""
        return self.bot("journal", "dirty")

    def service_keyspace(self, service: str) -> str:
        """The key pattern a service's Redis user is limited to (an ACL `~pattern`)."""
        if service == "merchant-bot":
            return glob_escape(self.bot()) + ":*"
        return glob_escape(self.prefix) + ":*"
