"""Deterministic identifiers.

An event id is derived from the business fact it records, never from the attempt that
publishes it, so a retry or a redelivery produces the same `Nats-Msg-Id` and JetStream drops it.
"""

import hashlib
import uuid

AUTOPAY_NAMESPACE_UUID = uuid.UUID("6f1c2a52-5d0e-4b8e-9a57-0c1f4e3b7a10")


def event_id(event_type: str, *key: object) -> str:
    """`uuid5` of the event type and the identifying key, e.g. ("order.paid", "10001")."""
    name = ":".join([event_type, *(str(part) for part in key)])
    return str(uuid.uuid5(AUTOPAY_NAMESPACE_UUID, name))


def normalize_gmail(address: str) -> str:
    return address.strip().lower()


def mailbox_id_for(gmail: str) -> str:
    """Stable subject-safe id of a mailbox (an e-mail address cannot be a NATS token)."""
    digest = hashlib.sha256(normalize_gmail(gmail).encode()).hexdigest()
    return f"mbx{digest[:16]}"
