"""Every event of the system, as pydantic v2 models.

Each event knows its type (`order.paid`), the aggregate and owner token of its subject, and a
deterministic id derived from the fact it records (used as `Nats-Msg-Id`). Payloads carry
enough to be understood alone: an order event carries the whole order, a credit outcome the
whole credit, so a consumer never needs another service's database.

Money is integer tiyin (1 so'm = 100 tiyin). Times are timezone-aware.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, computed_field

from autopay_contracts.ids import event_id as _event_id
from autopay_contracts.namespace import Namespace

SCHEMA_VERSION = 1

OrderStatus = Literal["waiting", "paid", "expired", "cancelled"]
NotificationKind = Literal["credit", "debit", "reversal", "ignored", "rejected", "unparsed"]

CARD_LAST4_PATTERN = r"^[0-9]{4}$"
"""Exactly four ASCII digits (`\\d` would also admit other scripts' digits)."""


def is_card_last4(value: object) -> bool:
    """Whether `value` is a card's last four digits: a str of exactly four ASCII digits."""
    return isinstance(value, str) and re.fullmatch(r"[0-9]{4}", value) is not None


Refusal = Literal[
    "unauthenticated",
    "untrusted_receiver",
    "malformed_auth",
    "forged",
    "spf_only",
    "misaligned",
    "dmarc_fail",
    "malformed_from",
    "multiple_from",
    "not_bank_sender",
    "replayed",
    "forwarder_disabled",
    "forwarder_foreign",
    "forwarder_sender",
    "mailbox_unknown",
    "too_large",
]
"""Why the trust policy refused a notification (a fixed set: events, ledger and metric labels).

- `unauthenticated`: no `Authentication-Results` header from the receiving server at all;
- `untrusted_receiver`: the topmost such header was written by someone else;
- `malformed_auth`: the topmost header does not tokenize cleanly (or is ambiguous);
- `forged`: the receiver shows no passing DKIM signature at all;
- `spf_only`: only SPF passed (an envelope sender proves nothing about `From`);
- `misaligned`: a DKIM signature passed, but for a domain other than the sender's;
- `dmarc_fail`: a DMARC result that is not `pass` for the sender's domain;
- `malformed_from` / `multiple_from`: `From` unreadable, or not exactly one address;
- `not_bank_sender`: a bank text from an address that is not the bank's;
- `replayed`: a genuine notification addressed to another mailbox;
- `forwarder_disabled` / `forwarder_foreign` / `forwarder_sender`: a forwarded text while the
  mailbox does not accept them, from an address other than the mailbox's own, or naming an
  SMS sender that is not the bank's;
- `mailbox_unknown`: the reading mailbox is not known, so the addressee cannot be checked;
- `too_large`: over the size cap; refused from its headers alone, the body never read.
"""
REFUSALS: tuple[str, ...] = Refusal.__args__  # type: ignore[attr-defined]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Event(_Model):
    """Base of every event. Subclasses set `event_type` and `aggregate` and say who owns them."""

    event_type: ClassVar[str]
    aggregate: ClassVar[str]
    schema_version: int = SCHEMA_VERSION

    @computed_field  # type: ignore[prop-decorator]
    @property
    def type(self) -> str:
        return self.event_type

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def event_id(self) -> str:
        return _event_id(self.event_type, *self.identity())

    def identity(self) -> tuple[object, ...]:
        """The business key that makes this fact unique."""
        raise NotImplementedError

    def owner_id(self) -> str:
        """The merchant or mailbox id carried as a subject token."""
        raise NotImplementedError

    @property
    def event_name(self) -> str:
        return self.event_type.split(".", 1)[1]

    def subject(self, ns: Namespace) -> str:
        return ns.subject(self.aggregate, self.owner_id(), self.event_name)

    @classmethod
    def subject_pattern(cls, ns: Namespace) -> str:
        """The subject of every event of this type, the owner token a wildcard."""
        return ns.subject(cls.aggregate, "*", cls.event_type.split(".", 1)[1])

    def headers(self) -> dict[str, str]:
        return {"Nats-Msg-Id": self.event_id, "autopay-event-type": self.event_type}

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


# --- orders -------------------------------------------------------------------------------


class Order(_Model):
    """A payment request as the merchant created it."""

    order_id: str
    merchant_id: str
    mailbox_id: str
    gmail: str
    card_last4: str = Field(pattern=CARD_LAST4_PATTERN)
    amount_tiyin: int = Field(gt=0)
    created_at: AwareDatetime
    expires_at: AwareDatetime
    client_user_id: str | None = None
    client_user_data: dict[str, Any] | None = None
    webhook_url: str | None = None
    notify_events: tuple[str, ...] = ("paid",)
    test_mode: bool = False


class _OrderEvent(Event):
    aggregate: ClassVar[str] = "order"
    order: Order

    def identity(self) -> tuple[object, ...]:
        return (self.order.order_id,)

    def owner_id(self) -> str:
        return self.order.merchant_id


class OrderCreated(_OrderEvent):
    event_type: ClassVar[str] = "order.created"


class OrderPaid(_OrderEvent):
    event_type: ClassVar[str] = "order.paid"
    credit_id: str
    paid_at: AwareDatetime
    late: bool = False
    manual: bool = False
    matched_by: str | None = Field(
        default=None, description="For a manual match: which API key made it (its key id)"
    )


class OrderExpired(_OrderEvent):
    event_type: ClassVar[str] = "order.expired"
    expired_at: AwareDatetime


class OrderCancelled(_OrderEvent):
    event_type: ClassVar[str] = "order.cancelled"
    cancelled_at: AwareDatetime


# --- credits ------------------------------------------------------------------------------


class Credit(_Model):
    """An incoming transfer read from a trusted bank notification."""

    credit_id: str
    mailbox_id: str
    gmail: str
    card_last4: str = Field(pattern=CARD_LAST4_PATTERN)
    amount_tiyin: int = Field(gt=0)
    currency: str = "UZS"
    occurred_at: AwareDatetime = Field(description="Bank time (minute precision, Tashkent)")
    received_at: AwareDatetime = Field(description="When the mail reached the mailbox")
    balance_tiyin: int | None = None
    format: str
    message_id: str | None = None
    evidence_ref: str | None = Field(default=None, description="Key of the raw RFC 822 bytes")
    test_mode: bool = False
    merchant_id: str | None = Field(
        default=None,
        description="The merchant whose mailbox it reached, when the reader knows it (sandbox "
        "credits); otherwise the matcher finds the mailbox's owner",
    )


UNOWNED = "unowned"
"""The owner token of a credit decision on a mailbox that belongs to no merchant any more."""


class _CreditEvent(Event):
    aggregate: ClassVar[str] = "credit"
    credit: Credit

    def identity(self) -> tuple[object, ...]:
        return (self.credit.credit_id,)

    def owner_id(self) -> str:
        return self.credit.mailbox_id


class CreditReceived(_CreditEvent):
    event_type: ClassVar[str] = "credit.received"


class _CreditDecision(_CreditEvent):
    """What the matcher decided about a credit. Its subject carries the merchant, not the
    mailbox (`credit.<merchant_id>.<decision>`), so an integrator's NATS user can be given
    exactly its own merchant's money."""

    merchant_id: str = UNOWNED

    def owner_id(self) -> str:
        return self.merchant_id


class CreditMatched(_CreditDecision):
    event_type: ClassVar[str] = "credit.matched"
    order_id: str
    late: bool = False
    manual: bool = Field(
        default=False, description="Matched by the merchant (`POST /api/transactions/{id}/match`)"
    )
    matched_by: str | None = Field(default=None, description="The key id of a manual match")
    matched_at: AwareDatetime | None = None
    amount_difference_tiyin: int = Field(
        default=0, description="Credit minus order amount (a manual match may differ)"
    )


class CreditUnmatched(_CreditDecision):
    event_type: ClassVar[str] = "credit.unmatched"
    reason: str


class CreditAmbiguous(_CreditDecision):
    event_type: ClassVar[str] = "credit.ambiguous"
    candidate_order_ids: tuple[str, ...]


class CreditRejected(Event):
    """A notification that is not a credit we trust: debit, reversal, unparsed, untrusted..."""

    event_type: ClassVar[str] = "credit.rejected"
    aggregate: ClassVar[str] = "credit"
    record_id: str
    mailbox_id: str
    gmail: str
    kind: NotificationKind
    reason: str
    refusal: Refusal | None = Field(
        default=None, description="For `kind == rejected`: which trust rule refused it"
    )
    format: str | None = None
    message_id: str | None = None
    received_at: AwareDatetime
    evidence_ref: str | None = None

    def identity(self) -> tuple[object, ...]:
        return (self.record_id,)

    def owner_id(self) -> str:
        return self.mailbox_id


class CreditDismissed(Event):
    """The merchant marked an unmatched, ambiguous or late credit as handled (no order)."""

    event_type: ClassVar[str] = "credit.dismissed"
    aggregate: ClassVar[str] = "credit"
    transaction_id: str
    merchant_id: str
    dismissed_at: AwareDatetime
    dismissed_by: str = Field(description="The key id that dismissed it")
    test_mode: bool = False

    def identity(self) -> tuple[object, ...]:
        return (self.transaction_id,)

    def owner_id(self) -> str:
        return self.merchant_id


# --- webhooks -----------------------------------------------------------------------------


class _WebhookEvent(Event):
    aggregate: ClassVar[str] = "webhook"
    delivery_id: str = Field(description="The Standard Webhooks `webhook-id`")
    merchant_id: str
    order_id: str
    order_event: str = Field(description="Which order event was delivered, e.g. `paid`")
    url: str
    attempt: int = Field(ge=1)
    status_code: int | None = None

    def owner_id(self) -> str:
        return self.merchant_id


class WebhookDelivered(_WebhookEvent):
    event_type: ClassVar[str] = "webhook.delivered"

    def identity(self) -> tuple[object, ...]:
        return (self.delivery_id,)


class WebhookFailed(_WebhookEvent):
    event_type: ClassVar[str] = "webhook.failed"
    error: str
    next_attempt_at: AwareDatetime | None = None

    def identity(self) -> tuple[object, ...]:
        return (self.delivery_id, self.attempt)


class WebhookExhausted(_WebhookEvent):
    event_type: ClassVar[str] = "webhook.exhausted"
    error: str

    def identity(self) -> tuple[object, ...]:
        return (self.delivery_id,)


# --- mailboxes ----------------------------------------------------------------------------


class _MailboxEvent(Event):
    aggregate: ClassVar[str] = "mailbox"
    mailbox_id: str
    gmail: str
    at: AwareDatetime
    detail: str | None = None

    def identity(self) -> tuple[object, ...]:
        return (self.mailbox_id, self.at.isoformat())

    def owner_id(self) -> str:
        return self.mailbox_id


class MailboxConnected(_MailboxEvent):
    event_type: ClassVar[str] = "mailbox.connected"


class MailboxAuthFailed(_MailboxEvent):
    event_type: ClassVar[str] = "mailbox.auth_failed"


class MailboxDown(_MailboxEvent):
    event_type: ClassVar[str] = "mailbox.down"


class MailboxUp(_MailboxEvent):
    event_type: ClassVar[str] = "mailbox.up"


class _MailboxConfigEvent(Event):
    """Desired state of one watched mailbox; the stream keeps only the latest per mailbox."""

    aggregate: ClassVar[str] = "mailbox-config"
    mailbox_id: str
    gmail: str
    revision: int = Field(ge=1)

    def identity(self) -> tuple[object, ...]:
        return (self.mailbox_id, self.revision)

    def owner_id(self) -> str:
        return self.mailbox_id

    def subject(self, ns: Namespace) -> str:
        return ns.mailbox_config(self.mailbox_id)

    @classmethod
    def subject_pattern(cls, ns: Namespace) -> str:
        return ns.mailbox_config("*")


class MailboxRegistered(_MailboxConfigEvent):
    event_type: ClassVar[str] = "mailbox-config.registered"
    imap_host: str
    imap_port: int
    imap_tls: bool = True
    username: str
    password_encrypted: str = Field(description="Fernet token; key from the environment")
    aliases: tuple[str, ...] = Field(
        default=(),
        description="Other addresses (normalized) that the owner declared deliver to this "
        "mailbox; a bank notification must be addressed to the mailbox or one of these",
    )
    allow_forwarded: bool = False
    test_mode: bool = False


class MailboxRemoved(_MailboxConfigEvent):
    event_type: ClassVar[str] = "mailbox-config.removed"


# --- sandbox ------------------------------------------------------------------------------


class SandboxTransferRequested(Event):
    """A test-mode merchant asked for a simulated incoming transfer to one of its sandbox cards.

    Mail-ingest turns it into a realistic bank e-mail, reads it with the real parser and
    publishes the resulting credit (marked `test_mode`) under the sandbox mailbox id, which it
    derives from `merchant_id` and `gmail` itself: the request cannot name a live mailbox."""

    event_type: ClassVar[str] = "sandbox.transfer_requested"
    aggregate: ClassVar[str] = "sandbox"
    transfer_id: str
    merchant_id: str
    gmail: str
    card_last4: str = Field(pattern=CARD_LAST4_PATTERN)
    amount_tiyin: int = Field(gt=0)
    requested_at: AwareDatetime
    format: str = "uzcard-email"

    def identity(self) -> tuple[object, ...]:
        return (self.transfer_id,)

    def owner_id(self) -> str:
        return self.merchant_id


# --- dead letters -------------------------------------------------------------------------


class DeadLetter(Event):
    """A message a service could not take (it does not decode into the event its subject
    promises), recorded before the service lets go of it. The original stays in its stream;
    `data` holds its bytes (base64) so an operator can inspect it and replay it to its subject."""

    event_type: ClassVar[str] = "deadletter.recorded"
    aggregate: ClassVar[str] = "deadletter"
    service: str = Field(description="The service that could not take the message")
    source_stream: str
    source_subject: str
    source_seq: int = Field(ge=1, description="The message's sequence in `source_stream`")
    reason: str
    recorded_at: AwareDatetime
    data: str = Field(description="The original message bytes, base64")
    data_truncated: bool = Field(
        default=False, description="`data` holds only the start of an oversized message"
    )
    source_headers: dict[str, str] = Field(
        default_factory=dict, description="The original message's headers"
    )

    def identity(self) -> tuple[object, ...]:
        return (self.service, self.source_stream, self.source_seq)

    def owner_id(self) -> str:
        return self.service


EVENT_TYPES: dict[str, type[Event]] = {
    cls.event_type: cls
    for cls in (
        OrderCreated,
        OrderPaid,
        OrderExpired,
        OrderCancelled,
        CreditReceived,
        CreditMatched,
        CreditUnmatched,
        CreditAmbiguous,
        CreditRejected,
        CreditDismissed,
        WebhookDelivered,
        WebhookFailed,
        WebhookExhausted,
        MailboxConnected,
        MailboxAuthFailed,
        MailboxDown,
        MailboxUp,
        MailboxRegistered,
        MailboxRemoved,
        SandboxTransferRequested,
        DeadLetter,
    )
}


def parse_event(data: bytes | str | dict[str, Any]) -> Event:
    """Decode any event by its `type` field."""
    payload = json.loads(data) if isinstance(data, bytes | str) else data
    try:
        cls = EVENT_TYPES[payload["type"]]
    except KeyError as exc:
        raise ValueError(f"unknown event type {payload.get('type')!r}") from exc
    return cls.model_validate(payload)
