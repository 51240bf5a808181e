"""The Redis key schema, in one place."""

from __future__ import annotations

from dataclasses import dataclass


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

    # --- global -----------------------------------------------------------------------------
    def order_locator(self, order_id: str) -> str:
        """order id → `<mailbox_id>:<card_last4>`, to find an order's card from its id alone."""
        return f"{self.prefix}:order-card:{order_id}"

    @property
    def order_sequence(self) -> str:
        return f"{self.prefix}:seq:order"

    @property
    def deadlines(self) -> str:
        """ZSET of `<mailbox_id>:<card_last4>:<order_id>` scored by expiry time (epoch s)."""
        return f"{self.prefix}:deadlines"

    def merchant(self, merchant_id: str, suffix: str = "") -> str:
        tail = f":{suffix}" if suffix else ""
        return f"{self.prefix}:merchant:{merchant_id}{tail}"

    def api_key(self, key_hash: str) -> str:
        return f"{self.prefix}:api-key:{key_hash}"

    def global_key(self, *parts: str) -> str:
        return ":".join([self.prefix, *parts])
