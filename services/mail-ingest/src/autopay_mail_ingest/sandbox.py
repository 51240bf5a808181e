"""Sandbox transfers: a test-mode merchant's simulated incoming transfer becomes a sandbox credit.

The gateway records the request (`SandboxTransferRequested`); this module builds the bank e-mail
with the same builders as `autopay dev send-credit`, reads it with the real parser and turns it
into the event a watched mailbox would have produced, so the matcher and the notifier handle it
as any other credit. Two things keep it inside the sandbox world whatever the request says:

- the credit's mailbox id is `sandbox_mailbox_id_for(merchant, gmail)`, computed here, so it
  lands where only that merchant's test orders are, never on a live mailbox;
- the credit is marked `test_mode`, and the matcher takes a test credit only on a sandbox id.

Everything the credit id is made of comes from the request (the Message-ID and the balance from
the transfer id), so a redelivered request gives the same credit and JetStream drops the copy.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from faststream import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsBroker, NatsMessage, PullSub
from pydantic import ValidationError

from autopay_bankmail import parse_notification
from autopay_bankmail.synth import BUILDERS, FORWARDED_FORMATS, RECEIVER, credit_notification
from autopay_contracts import CreditReceived, Namespace, SandboxTransferRequested, parse_event
from autopay_contracts.ids import sandbox_mailbox_id_for
from autopay_contracts.permissions import pull_inbox_prefix
from autopay_contracts.streams import SANDBOX
from autopay_mail_ingest.domain import Outcome, WatchedMailbox, build_outcome
from autopay_runtime.logging import get_logger
from autopay_runtime.publishing import EventPublisher

SANDBOX_DOMAIN = "sandbox.autopay.invalid"


def _format(request: SandboxTransferRequested) -> str:
    return request.format if request.format in BUILDERS else "uzcard-email"


def sandbox_mail(request: SandboxTransferRequested) -> bytes:
    """The bank e-mail of this transfer; the same transaction every time for one request."""
    fmt = _format(request)
    seed = int(hashlib.sha256(request.transfer_id.encode()).hexdigest()[:12], 16)
    return credit_notification(
        fmt,
        to=request.gmail,
        amount_tiyin=request.amount_tiyin,
        card_last4=request.card_last4,
        occurred_at=request.requested_at,
        balance_tiyin=request.amount_tiyin + seed % 1_000_000_00,
        message_id=f"<{request.transfer_id}@{SANDBOX_DOMAIN}>",
        sent_at=request.requested_at,
    )


def sandbox_outcome(request: SandboxTransferRequested) -> Outcome:
    """What the transfer's e-mail becomes, read as the sandbox mailbox of its merchant."""
    mailbox = WatchedMailbox(
        mailbox_id=sandbox_mailbox_id_for(request.merchant_id, request.gmail),
        gmail=request.gmail,
        revision=1,
        imap_host="",
        imap_port=0,
        imap_tls=False,
        username=request.gmail,
        password="",
        allow_forwarded=_format(request) in FORWARDED_FORMATS,
        test_mode=True,
    )
    raw = sandbox_mail(request)
    notification = parse_notification(
        raw,
        mailbox=request.gmail,
        allow_forwarded=mailbox.allow_forwarded,
        trusted_receiver=RECEIVER,
    )
    outcome = build_outcome(
        notification, mailbox=mailbox, raw=raw, received_at=request.requested_at, evidence_ref=None
    )
    if isinstance(outcome.event, CreditReceived):  # a sandbox mailbox has no owner record
        credit = outcome.event.credit.model_copy(update={"merchant_id": request.merchant_id})
        outcome = replace(outcome, event=CreditReceived(credit=credit))
    return outcome


def register(broker: NatsBroker, publisher: EventPublisher, ns: Namespace, durable: str) -> None:
    """One durable pull consumer shared by every replica. A request whose credit is not
    stored (NATS refusing) is nacked and comes back; an undecodable one is refused."""
    log = get_logger(task="sandbox")

    @broker.subscriber(
        SandboxTransferRequested.subject_pattern(ns),
        stream=JStream(SANDBOX.name(ns), declare=False),
        durable=durable,
        pull_sub=PullSub(batch_size=10, timeout=1.0),
        inbox_prefix=pull_inbox_prefix("mail-ingest"),
        config=ConsumerConfig(ack_wait=30),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_sandbox_transfer() -> None:
        msg: NatsMessage = broker.context.get_local("message")
        try:
            request = parse_event(msg.body)
        except (ValueError, ValidationError) as exc:
            log.error("undecodable sandbox request refused", error=str(exc)[:300])
            await msg.reject()
            return
        if not isinstance(request, SandboxTransferRequested):
            await msg.ack()
            return
        outcome = sandbox_outcome(request)
        try:
            await publisher.publish(outcome.event)
        except Exception as exc:
            log.warning("sandbox credit not stored; retried", error=f"{type(exc).__name__}")
            await msg.nack(delay=2)
            return
        await msg.ack()
        log.info(
            "sandbox transfer read",
            transfer_id=request.transfer_id,
            merchant_id=request.merchant_id,
            credit=outcome.is_credit,
        )
