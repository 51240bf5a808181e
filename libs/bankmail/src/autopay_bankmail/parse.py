"""Entry point: RFC 822 bytes → `Notification`.

Pipeline: read the envelope (MIME, headers) → find the format (registry) → apply the trust
policy for that format's channel (`trust`) → apply the credit policy (UZS only, sane fields).
"""

from __future__ import annotations

from collections.abc import Iterable

from autopay_bankmail import formats, trust
from autopay_bankmail.envelope import Envelope, read_envelope
from autopay_bankmail.formats.base import Classification, Format
from autopay_bankmail.model import Notification
from autopay_bankmail.trust import TRUSTED_RECEIVER
from autopay_contracts import is_card_last4

MAX_MESSAGE_BYTES = 1 << 20
CREDIT_CURRENCY = "UZS"


def parse_notification(
    raw: bytes,
    *,
    mailbox: str | None = None,
    aliases: Iterable[str] = (),
    allow_forwarded: bool = False,
    trusted_receiver: str = TRUSTED_RECEIVER,
) -> Notification:
    """Classify one message. Never raises.

    `mailbox` is the address of the mailbox the message was read from, `aliases` the other
    addresses its owner declared for it: a bank notification must be addressed to one of them.
    `mailbox` defaults to the message's `To` address, which is only for reading files by hand
    (`To` is written by the sender): a service must pass the mailbox it actually reads from.
    """
    try:
        return _parse(raw, mailbox, aliases, allow_forwarded, trusted_receiver)
    except Exception as exc:
        return Notification(kind="unparsed", reason=f"parser error: {type(exc).__name__}")


def _parse(
    raw: bytes,
    mailbox: str | None,
    aliases: Iterable[str],
    allow_forwarded: bool,
    trusted_receiver: str,
) -> Notification:
    if not isinstance(raw, bytes | bytearray | memoryview):
        return Notification(kind="unparsed", reason="message is not bytes")
    if len(raw) > MAX_MESSAGE_BYTES:
        return Notification(kind="unparsed", reason=f"message over {MAX_MESSAGE_BYTES} bytes")
    env = read_envelope(bytes(raw))
    if mailbox is None and env.to_addresses:
        mailbox = env.to_addresses[0]
    found = formats.classify(env)
    if found is None:
        return _notification(env, None, Classification("ignored", reason="not a bank notification"))
    fmt, reading = found
    verdict = _trust(fmt, env, mailbox, tuple(aliases), allow_forwarded, trusted_receiver)
    if not verdict.trusted:
        return _notification(
            env, fmt.name, reading, kind="rejected", reason=verdict.reason, refusal=verdict.refusal
        )
    return _notification(env, fmt.name, _credit_policy(reading))


def _trust(
    fmt: Format,
    env: Envelope,
    mailbox: str | None,
    aliases: tuple[str, ...],
    allow_forwarded: bool,
    receiver: str,
) -> trust.Verdict:
    channel = fmt.channel
    if channel == "either":
        channel = "bank-email" if trust.is_bank_sender(env) else "forwarded"
    if channel == "bank-email":
        return trust.assess_bank_email(
            env, mailbox=mailbox, aliases=aliases, trusted_receiver=receiver
        )
    return trust.assess_forwarded(
        env,
        mailbox=mailbox,
        allow_forwarded=allow_forwarded,
        sms_senders=fmt.sms_senders,
        trusted_receiver=receiver,
    )


def _credit_policy(reading: Classification) -> Classification:
    """Only an unambiguous UZS credit with every field present pays an order."""
    if reading.kind != "credit":
        return reading
    if reading.currency != CREDIT_CURRENCY:
        return reading.but("ignored", f"credit in {reading.currency}: only UZS credits pay")
    if not reading.amount_tiyin or reading.amount_tiyin <= 0:
        return reading.but("unparsed", "credit without a positive amount")
    if not is_card_last4(reading.card_last4):
        return reading.but("unparsed", "credit without a 4-digit card")
    if reading.occurred_at is None or reading.occurred_at.tzinfo is None:
        return reading.but("unparsed", "credit without a bank time")
    return reading


def _notification(
    env: Envelope,
    format_name: str | None,
    reading: Classification,
    *,
    kind: str | None = None,
    reason: str | None = None,
    refusal: str | None = None,
) -> Notification:
    return Notification(
        kind=kind or reading.kind,  # type: ignore[arg-type]
        format=format_name,
        amount_tiyin=reading.amount_tiyin,
        currency=reading.currency,
        card_last4=reading.card_last4,
        occurred_at=reading.occurred_at,
        balance_tiyin=reading.balance_tiyin,
        reason=reason if reason is not None else reading.reason,
        refusal=refusal,
        message_id=env.message_id,
        sender=env.sender,
        received_at=env.sent_at,
    )
