"""Subjects and stream names, built in one place.

Every subject is `<root>.v1.<aggregate>.<owner id>.<event>`: the owner id (a merchant id or a
mailbox id) is its own token, so NATS permissions can give an integrator exactly its own events,
e.g. `autopay.v1.order.42.>` and `autopay.v1.webhook.42.>`.

The root is `autopay` in production; tests give each run its own root so that several test
runs can share one NATS server without seeing each other's streams.
"""

import re
from dataclasses import dataclass

VERSION = "v1"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


def _token(value: str, what: str) -> str:
    value = str(value)
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a valid subject token")
    return value


@dataclass(frozen=True)
class Namespace:
    root: str = "autopay"

    def __post_init__(self) -> None:
        _token(self.root, "namespace root")

    @property
    def prefix(self) -> str:
        return f"{self.root}.{VERSION}"

    def stream_name(self, base: str) -> str:
        """`ORDERS` → `AUTOPAY_ORDERS` (JetStream names are per server, hence the root)."""
        return f"{self.root.upper().replace('-', '_')}_{base}"

    def subject(self, aggregate: str, owner_id: str = "*", event: str = "*") -> str:
        owner = owner_id if owner_id in ("*", ">") else _token(owner_id, "owner id")
        if owner == ">":
            return f"{self.prefix}.{aggregate}.>"
        return f"{self.prefix}.{aggregate}.{owner}.{event}"

    def all_of(self, aggregate: str) -> str:
        return f"{self.prefix}.{aggregate}.>"

    # Named helpers keep call sites readable and typo-free.
    def order(self, merchant_id: str = "*", event: str = "*") -> str:
        return self.subject("order", merchant_id, event)

    def credit(self, mailbox_id: str = "*", event: str = "*") -> str:
        return self.subject("credit", mailbox_id, event)

    def webhook(self, merchant_id: str = "*", event: str = "*") -> str:
        return self.subject("webhook", merchant_id, event)

    def mailbox(self, mailbox_id: str = "*", event: str = "*") -> str:
        return self.subject("mailbox", mailbox_id, event)

    def mailbox_config(self, mailbox_id: str = "*") -> str:
        return self.subject("mailbox-config", mailbox_id, "current")

    def sandbox(self, merchant_id: str = "*", event: str = "*") -> str:
        return self.subject("sandbox", merchant_id, event)

    def deadletter(self, service: str = "*", event: str = "*") -> str:
        return self.subject("deadletter", service, event)
