"""Sandbox transfers become sandbox credits; a sandbox mailbox is never watched.

Attack: a test key (or a gateway speaking for one) naming a live mailbox or card in a sandbox
request, or registering a sandbox mailbox for watching. The credit is always filed under the
requesting merchant's sandbox mailbox id and marked `test_mode`; a registration marked
`test_mode` never makes mail-ingest log in anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from autopay_bankmail import parse_notification
from autopay_contracts import (
    CreditReceived,
    MailboxRegistered,
    SandboxTransferRequested,
    is_sandbox_mailbox,
    mailbox_id_for,
    parse_event,
    sandbox_mailbox_id_for,
)
from autopay_contracts.streams import CREDITS
from autopay_mail_ingest.bootstrap import build_app
from autopay_mail_ingest.sandbox import sandbox_mail, sandbox_outcome
from autopay_mail_ingest.settings import IngestSettings
from autopay_store.secrets import SecretBox
from autopay_testing.imap import ImapServer
from autopay_testing.jetstream import publish_event, stored
from autopay_testing.waiting import eventually_async

KEY = SecretBox.generate_key()
NOW = datetime(2026, 12, 3, 7, 30, 12, tzinfo=UTC)


def request(transfer_id: str = "sbx1", **kw) -> SandboxTransferRequested:
    base = dict(
        transfer_id=transfer_id,
        merchant_id="7",
        gmail="karta@gmail.com",
        card_last4="6412",
        amount_tiyin=5_003_700,
        requested_at=NOW,
    )
    return SandboxTransferRequested(**(base | kw))


def test_a_sandbox_mail_is_a_trusted_credit_for_the_real_parser():
    raw = sandbox_mail(request())
    notification = parse_notification(raw, mailbox="karta@gmail.com")
    assert notification.kind == "credit", notification.reason
    assert (notification.amount_tiyin, notification.card_last4) == (5_003_700, "6412")


def test_the_credit_lands_in_the_merchants_sandbox_only():
    outcome = sandbox_outcome(request())
    assert isinstance(outcome.event, CreditReceived)
    credit = outcome.event.credit
    assert credit.test_mode is True
    assert credit.mailbox_id == sandbox_mailbox_id_for("7", "karta@gmail.com")
    assert credit.mailbox_id != mailbox_id_for("karta@gmail.com")
    assert sandbox_outcome(request(merchant_id="8")).event.credit.mailbox_id != credit.mailbox_id
    assert (credit.amount_tiyin, credit.card_last4) == (5_003_700, "6412")
    # Two transfers of one amount in one minute are two credits; a redelivery is the same one.
    assert sandbox_outcome(request("sbx2")).event.event_id != outcome.event.event_id
    assert sandbox_outcome(request()).event.event_id == outcome.event.event_id


def settings_for(nats_url, redis_url, namespace, redis_prefix) -> IngestSettings:
    return IngestSettings(
        nats_url=nats_url,
        redis_url=redis_url,
        namespace=namespace.root,
        redis_prefix=redis_prefix,
        secret_keys=KEY,
        imap_connect_timeout_s=2,
        backoff_initial_s=0.05,
        backoff_max_s=0.3,
    )


@contextlib.asynccontextmanager
async def running(settings: IngestSettings) -> AsyncIterator[None]:
    app = build_app(settings)
    await app.start()
    try:
        yield
    finally:
        await app.stop()


async def test_requests_become_sandbox_credits_once(
    nats_url, redis_url, namespace, redis_prefix, streams, redis_client, nats_client
):
    """Through real NATS and the service: two requests, one of them stored twice (a gateway
    retry under another Msg-Id), give exactly two test-mode credits on the sandbox mailbox."""
    settings = settings_for(nats_url, redis_url, namespace, redis_prefix)
    first, second = request("sbx-a"), request("sbx-b", amount_tiyin=100_00)
    async with running(settings):
        await publish_event(nats_client, namespace, first)
        await publish_event(nats_client, namespace, first, msg_id="retry-of-a")
        await publish_event(nats_client, namespace, second)

        async def two_credits() -> list[dict]:
            found = await stored(nats_client, CREDITS.name(namespace), ".received")
            return found if len(found) >= 2 else []

        found = await eventually_async(two_credits, 15, "two sandbox credits")
        await asyncio.sleep(0.5)  # a third (the retry) would have landed by now
        found = await stored(nats_client, CREDITS.name(namespace), ".received")
    received = [parse_event(item) for item in found]
    assert len(received) == 2
    assert {event.credit.amount_tiyin for event in received} == {5_003_700, 100_00}
    for event in received:
        assert event.credit.test_mode is True
        assert is_sandbox_mailbox(event.credit.mailbox_id)
        assert event.credit.mailbox_id == sandbox_mailbox_id_for("7", "karta@gmail.com")


async def test_a_test_mode_registration_is_never_watched(
    nats_url, redis_url, namespace, redis_prefix, streams, redis_client, nats_client
):
    """A MAILBOX_CONFIG registration marked test_mode (or under a sandbox id) with a working
    password: mail-ingest never connects to the IMAP server."""
    settings = settings_for(nats_url, redis_url, namespace, redis_prefix)
    async with ImapServer({"karta@gmail.com": "pw"}) as server:
        for mailbox_id, test_mode in (
            (mailbox_id_for("karta@gmail.com"), True),
            (sandbox_mailbox_id_for("7", "karta@gmail.com"), False),
        ):
            event = MailboxRegistered(
                mailbox_id=mailbox_id,
                gmail="karta@gmail.com",
                revision=1,
                imap_host=server.host,
                imap_port=server.port,
                imap_tls=False,
                username="karta@gmail.com",
                password_encrypted=SecretBox(KEY).encrypt("pw"),
                test_mode=test_mode,
            )
            await publish_event(nats_client, namespace, event)
        async with running(settings):
            await asyncio.sleep(2.0)
        assert server.connections_accepted == 0
