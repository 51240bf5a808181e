"""Deterministic identifiers, and the one normalization of a mailbox address.

An event id is derived from the business fact it records, never from the attempt that
publishes it, so a retry or a redelivery produces the same `Nats-Msg-Id` and JetStream drops it.

A mailbox is identified by its normalized address: Gmail delivers `karta@gmail.com`,
`K.arta@gmail.com`, `karta+shop@gmail.com` and `karta@googlemail.com` to one inbox, so they are
one mailbox everywhere (mailbox ids, card and mailbox ownership, reservations, dedup, trust).
"""

import hashlib
import uuid

AUTOPAY_NAMESPACE_UUID = uuid.UUID("6f1c2a52-5d0e-4b8e-9a57-0c1f4e3b7a10")

GMAIL_DOMAIN = "gmail.com"
GMAIL_DOMAINS = frozenset({GMAIL_DOMAIN, "googlemail.com"})


def event_id(event_type: str, *key: object) -> str:
    """`uuid5` of the event type and the identifying key, e.g. ("order.paid", "10001")."""
    name = ":".join([event_type, *(str(part) for part in key)])
    return str(uuid.uuid5(AUTOPAY_NAMESPACE_UUID, name))


def normalize_gmail(address: str) -> str:
    """The canonical spelling of a mailbox address.

    Lowercase and trimmed; `googlemail.com` is `gmail.com`; in a `gmail.com` local part the dots
    and any `+tag` are ignored, as Gmail ignores them. Other domains keep their local part as
    written (lowercased): their servers may treat dots and tags as significant.
    """
    address = address.strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return address
    if domain in GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        domain = GMAIL_DOMAIN
    return f"{local}@{domain}"


def mailbox_id_for(gmail: str) -> str:
    """Stable subject-safe id of a mailbox (an e-mail address cannot be a NATS token): a digest
    of the normalized address, so every spelling of one inbox has one id."""
    digest = hashlib.sha256(normalize_gmail(gmail).encode()).hexdigest()
    return f"mbx{digest[:16]}"


def legacy_mailbox_id_for(gmail: str) -> str:
    """The id a mailbox had before addresses were normalized the Gmail way (lowercase only).
    Used only to find and migrate state stored under it."""
    digest = hashlib.sha256(gmail.strip().lower().encode()).hexdigest()
    return f"mbx{digest[:16]}"


SANDBOX_MAILBOX_PREFIX = "tst"
LIVE_MAILBOX_PREFIX = "mbx"


def sandbox_mailbox_id_for(merchant_id: str, gmail: str) -> str:
    """The id of a merchant's sandbox (test-mode) mailbox for this address.

    The sandbox is a separate world: a test card's orders and credits live under this id, never
    under the live `mailbox_id_for(gmail)`, so the order book (keyed by mailbox and card) cannot
    match a live credit with a test order or the other way round. It includes the merchant, so
    one merchant's sandbox cannot reach another's either."""
    digest = hashlib.sha256(f"{merchant_id}:{normalize_gmail(gmail)}".encode()).hexdigest()
    return f"{SANDBOX_MAILBOX_PREFIX}{digest[:16]}"


def is_sandbox_mailbox(mailbox_id: str) -> bool:
    """Whether this mailbox id belongs to the sandbox world (see `sandbox_mailbox_id_for`)."""
    return mailbox_id.startswith(SANDBOX_MAILBOX_PREFIX)
