"""mail-ingest against real NATS (JetStream), Redis and a real IMAP server with IDLE."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import pytest
from prometheus_client import REGISTRY

from autopay_bankmail.synth import uzcard_credit_email
from autopay_contracts import (
    CreditReceived,
    CreditRejected,
    Event,
    MailboxRegistered,
    MailboxRemoved,
    Namespace,
    mailbox_id_for,
    parse_event,
)
from autopay_contracts.local_time import TASHKENT
from autopay_mail_ingest.bootstrap import build_app
from autopay_mail_ingest.settings import IngestSettings
from autopay_store.secrets import SecretBox
from autopay_testing.imap import ImapServer, make_self_signed_cert

GMAIL = "shop.kassa@gmail.com"
APP_PASSWORD = "abcd efgh ijkl mnop"
MAILBOX_ID = mailbox_id_for(GMAIL)
KEY = SecretBox.generate_key()

# Three distinct bank notifications (amount in tiyin) and two mails that are not credits.
AMOUNT_A, AMOUNT_B, AMOUNT_C = 5_003_700, 1_005_800, 150_001_400


def credit_mail(amount_tiyin: int, minute: int) -> bytes:
    return uzcard_credit_email(
        to=GMAIL,
        amount_tiyin=amount_tiyin,
        card_last4="6412",
        occurred_at=datetime(2026, 5, 16, 9, minute, tzinfo=TASHKENT),
        balance_tiyin=10_000_000 + amount_tiyin,
        message_id=f"<{amount_tiyin}.{minute}@info.uzcard.uz>",
    )


CREDIT_A = credit_mail(AMOUNT_A, 1)
CREDIT_B = credit_mail(AMOUNT_B, 2)
CREDIT_C = credit_mail(AMOUNT_C, 3)


def unauthenticated(raw: bytes) -> bytes:
    """The same bank text without the receiver's Authentication-Results: never a credit."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    kept, skipping = [], False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"authentication-results:"):
            skipping = True
            continue
        if skipping and line[:1] in (b" ", b"\t"):
            continue
        skipping = False
        kept.append(line)
    return b"\r\n".join(kept) + sep + body


NOT_CREDIT = unauthenticated(credit_mail(7_007_700, 4))


def resent(raw: bytes, message_id: str) -> bytes:
    """The same notification mailed again under another Message-ID."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = [
        f"Message-ID: <{message_id}>".encode() if line.lower().startswith(b"message-id:") else line
        for line in head.split(b"\r\n")
    ]
    return b"\r\n".join(lines) + sep + body


@pytest.fixture
def settings(nats_url, redis_url, namespace, redis_prefix) -> IngestSettings:
    return IngestSettings(
        nats_url=nats_url,
        redis_url=redis_url,
        namespace=namespace.root,
        redis_prefix=redis_prefix,
        secret_keys=KEY,
        imap_connect_timeout_s=5,
        imap_command_timeout_s=5,
        reidle_interval_s=30,
        backoff_initial_s=0.05,
        backoff_max_s=0.3,
        auth_retry_s=60,
    )


@pytest.fixture
async def imap() -> AsyncIterator[ImapServer]:
    async with ImapServer({GMAIL: APP_PASSWORD}) as server:
        yield server


async def register(nats_client, ns: Namespace, server: ImapServer, password=APP_PASSWORD, rev=1):
    event = MailboxRegistered(
        mailbox_id=MAILBOX_ID,
        gmail=GMAIL,
        revision=rev,
        imap_host=server.host,
        imap_port=server.port,
        imap_tls=False,
        username=GMAIL,
        password_encrypted=SecretBox(KEY).encrypt(password),
    )
    await nats_client.jetstream().publish(
        event.subject(ns), event.to_bytes(), headers=event.headers()
    )


@contextlib.asynccontextmanager
async def running(settings: IngestSettings, **options) -> AsyncIterator[None]:
    app = build_app(settings, **options)
    await app.start()
    try:
        yield
    finally:
        await app.stop()


async def events(nats_client, ns: Namespace, base: str) -> list[Event]:
    js = nats_client.jetstream()
    info = await js.stream_info(ns.stream_name(base))
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        msg = await js.get_msg(ns.stream_name(base), seq)
        found.append(parse_event(msg.data))
    return found


async def wait_for(
    nats_client, ns, base: str, ok: Callable[[list[Event]], bool], timeout: float = 10.0
) -> list[Event]:
    deadline = time.monotonic() + timeout
    while True:
        found = await events(nats_client, ns, base)
        if ok(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; {base} holds {[e.type for e in found]}")
        await asyncio.sleep(0.05)


def duplicates() -> float:
    return REGISTRY.get_sample_value("autopay_ingest_duplicates_total") or 0.0


def credits(found: list[Event]) -> list[CreditReceived]:
    return [e for e in found if isinstance(e, CreditReceived)]


async def wait_idle(redis_client, redis_prefix, timeout=10.0) -> None:
    key = f"{redis_prefix}:mailbox:{MAILBOX_ID}:health"
    deadline = time.monotonic() + timeout
    while await redis_client.hget(key, "status") != "connected":
        assert time.monotonic() < deadline, "mailbox never connected"
        await asyncio.sleep(0.02)


async def test_mail_appended_while_idling_becomes_a_credit(
    settings, imap, nats_client, namespace, streams, redis_client, redis_prefix
):
    await register(nats_client, namespace, imap)
    async with running(settings):
        await wait_idle(redis_client, redis_prefix)
        found = await wait_for(
            nats_client,
            namespace,
            "MAILBOXES",
            lambda f: any(e.type == "mailbox.connected" for e in f),
        )
        await imap.append(GMAIL, CREDIT_A)
        found = await wait_for(nats_client, namespace, "CREDITS", lambda f: len(credits(f)) == 1)

    credit = credits(found)[0].credit
    assert (credit.mailbox_id, credit.gmail) == (MAILBOX_ID, GMAIL)
    assert (credit.amount_tiyin, credit.card_last4, credit.currency) == (AMOUNT_A, "6412", "UZS")
    assert credit.evidence_ref and credit.evidence_ref.startswith(f"{redis_prefix}:mailbox:")
    stored = await redis_client.get(credit.evidence_ref)
    assert stored is not None and "UZCARD INFO" in stored
    assert await redis_client.ttl(credit.evidence_ref) > 29 * 86400
    cursor = await redis_client.hgetall(f"{redis_prefix}:mailbox:{MAILBOX_ID}:cursor")
    assert int(cursor["last_uid"]) >= 1
    health = await redis_client.hgetall(f"{redis_prefix}:mailbox:{MAILBOX_ID}:health")
    assert health["credits"] == "1" and health["last_mail_at"]


async def test_reidle_timer_keeps_the_mailbox_live(
    settings, imap, nats_client, namespace, streams, redis_client, redis_prefix
):
    settings = settings.model_copy(update={"reidle_interval_s": 0.2})
    await register(nats_client, namespace, imap)
    async with running(settings):
        await wait_idle(redis_client, redis_prefix)
        await asyncio.sleep(0.7)  # several DONE / IDLE cycles on the same connection
        await imap.append(GMAIL, CREDIT_A)
        await wait_for(nats_client, namespace, "CREDITS", lambda f: len(credits(f)) == 1)
    assert imap.connections_accepted == 2  # the watcher's one connection, plus the APPEND


async def test_mail_arriving_while_stopped_is_caught_up_exactly_once(
    settings, imap, nats_client, namespace, streams, redis_client, redis_prefix
):
    await register(nats_client, namespace, imap)
    async with running(settings):
        await wait_idle(redis_client, redis_prefix)
        await imap.append(GMAIL, CREDIT_A)
        await wait_for(nats_client, namespace, "CREDITS", lambda f: len(credits(f)) == 1)

    while_stopped = [2_000_000 + n * 100 for n in range(20)]
    for n, amount in enumerate(while_stopped):
        last_uid = await imap.append(GMAIL, credit_mail(amount, 10 + n))
    async with running(settings):
        found = await wait_for(nats_client, namespace, "CREDITS", lambda f: len(credits(f)) >= 21)
        cursor_key = f"{redis_prefix}:mailbox:{MAILBOX_ID}:cursor"
        deadline = time.monotonic() + 5
        while int((await redis_client.hgetall(cursor_key)).get("last_uid", 0)) < last_uid:
            assert time.monotonic() < deadline, "the cursor did not reach the last mail"
            await asyncio.sleep(0.02)
        found = await events(nats_client, namespace, "CREDITS")
    amounts = [c.credit.amount_tiyin for c in credits(found)]
    assert sorted(amounts) == sorted([AMOUNT_A, *while_stopped])


async def test_same_notification_twice_gives_one_credit(
    settings, imap, nats_client, namespace, streams, redis_client, redis_prefix
):
    await register(nats_client, namespace, imap)
    raw = CREDIT_A
    duplicates_before = duplicates()
    async with running(settings):
        await wait_idle(redis_client, redis_prefix)
        await imap.append(GMAIL, raw)
        await imap.append(GMAIL, raw)
        await imap.append(GMAIL, resent(raw, "another-id@info.uzcard.uz"))
        last_uid = await imap.append(GMAIL, CREDIT_B)
        found = await wait_for(nats_client, namespace, "CREDITS", lambda f: len(credits(f)) >= 2)
        cursor_key = f"{redis_prefix}:mailbox:{MAILBOX_ID}:cursor"
        deadline = time.monotonic() + 5
        while int((await redis_client.hgetall(cursor_key)).get("last_uid", 0)) < last_uid:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        found = await events(nats_client, namespace, "CREDITS")
    assert sorted(c.credit.amount_tiyin for c in credits(found)) == sorted([AMOUNT_A, AMOUNT_B])
    assert duplicates() - duplicates_before == 2  # dropped by the dedup markers, not only NATS


def personal_skipped() -> float:
    return REGISTRY.get_sample_value("autopay_ingest_personal_skipped_total") or 0.0


def rejections(reason: str) -> float:
    return REGISTRY.get_sample_value("autopay_ingest_rejected_total", {"reason": reason}) or 0.0


async def test_bank_mail_that_is_not_a_credit_is_rejected_and_personal_mail_skipped(
    settings, imap, nats_client, namespace, streams, redis_client, redis_prefix
):
    """Survives: a bank text without the receiver's authentication (anyone can send one) is
    recorded `rejected`, never credited; a personal mail in the same inbox is passed unread
    (no event, no evidence), and neither holds the cursor back from the next credit."""
    await register(nats_client, namespace, imap)
    skipped_before = personal_skipped()
    refused_before = rejections("unauthenticated")
    async with running(settings):
        await wait_idle(redis_client, redis_prefix)
        await imap.append(GMAIL, NOT_CREDIT)
        await imap.append(GMAIL, b"Subject: hello\r\nFrom: friend@example.com\r\n\r\nhi\r\n")
        last_uid = await imap.append(GMAIL, CREDIT_A)
        found = await wait_for(nats_client, namespace, "CREDITS", lambda f: len(credits(f)) == 1)
        await wait_cursor(redis_client, redis_prefix, last_uid)
        found = await events(nats_client, namespace, "CREDITS")
    rejected = [e for e in found if isinstance(e, CreditRejected)]
    assert [c.credit.amount_tiyin for c in credits(found)] == [AMOUNT_A]
    assert len(rejected) == 1, rejected
    assert rejected[0].mailbox_id == MAILBOX_ID and rejected[0].evidence_ref
    assert (rejected[0].kind, rejected[0].refusal) == ("rejected", "unauthenticated")
    assert rejected[0].message_id == "<7007700.4@info.uzcard.uz>"
    assert personal_skipped() - skipped_before == 1
    assert rejections("unauthenticated") - refused_before == 1
    evidence = [k async for k in redis_client.scan_iter(match=f"{redis_prefix}:*:evidence:*")]
    assert len(evidence) == 2  # the refused bank text and the credit; not the personal mail
    for key in evidence:
        assert "friend@example.com" not in await redis_client.get(key)


async def wait_cursor(redis_client, redis_prefix, uid: int, timeout: float = 5.0) -> None:
    cursor_key = f"{redis_prefix}:mailbox:{MAILBOX_ID}:cursor"
    deadline = time.monotonic() + timeout
    while int((await redis_client.hgetall(cursor_key)).get("last_uid", 0)) < uid:
        assert time.monotonic() < deadline, f"the cursor did not reach UID {uid}"
        await asyncio.sleep(0.02)


async def test_wrong_password_emits_auth_failed_without_retry_loop(
    settings, imap, nats_client, namespace, streams, redis_client, redis_prefix
):
    await register(nats_client, namespace, imap, password="wrong")
    async with running(settings):
        await wait_for(
            nats_client,
            namespace,
            "MAILBOXES",
            lambda f: any(e.type == "mailbox.auth_failed" for e in f),
        )
        await asyncio.sleep(1.0)
        found = await events(nats_client, namespace, "MAILBOXES")
        health = await redis_client.hgetall(f"{redis_prefix}:mailbox:{MAILBOX_ID}:health")
    assert imap.connections_accepted == 1
    assert [e.type for e in found] == ["mailbox.auth_failed"]
    assert health["status"] == "auth_failed"
    assert "AUTHENTICATIONFAILED" in health["detail"]


async def test_dropped_connections_reconnect_and_catch_up(
    settings, imap, nats_client, namespace, streams, redis_client, redis_prefix
):
    await register(nats_client, namespace, imap)
    async with running(settings):
        await wait_idle(redis_client, redis_prefix)
        await imap.append(GMAIL, CREDIT_A)
        await wait_for(nats_client, namespace, "CREDITS", lambda f: len(credits(f)) == 1)
        assert await imap.disconnect_all() >= 1
        await imap.append(GMAIL, CREDIT_B)  # lands while the watcher is reconnecting
        found = await wait_for(nats_client, namespace, "CREDITS", lambda f: len(credits(f)) == 2)
        mailbox_events = await wait_for(
            nats_client,
            namespace,
            "MAILBOXES",
            lambda f: [e.type for e in f][-2:] == ["mailbox.down", "mailbox.up"],
        )
        await imap.append(GMAIL, CREDIT_C)  # and IDLE works again after the reconnect
        found = await wait_for(nats_client, namespace, "CREDITS", lambda f: len(credits(f)) == 3)
    assert mailbox_events[0].type == "mailbox.connected"
    assert sorted(c.credit.amount_tiyin for c in credits(found)) == sorted(
        [AMOUNT_A, AMOUNT_B, AMOUNT_C]
    )


async def test_removed_mailbox_is_no_longer_watched(
    settings, imap, nats_client, namespace, streams, redis_client, redis_prefix
):
    await register(nats_client, namespace, imap)
    async with running(settings):
        await wait_idle(redis_client, redis_prefix)
        removed = MailboxRemoved(mailbox_id=MAILBOX_ID, gmail=GMAIL, revision=2)
        await nats_client.jetstream().publish(
            removed.subject(namespace), removed.to_bytes(), headers=removed.headers()
        )
        deadline = time.monotonic() + 5
        while imap.connection_count:
            assert time.monotonic() < deadline, "watcher kept its IMAP connection"
            await asyncio.sleep(0.02)
        await imap.append(GMAIL, CREDIT_A)
        await asyncio.sleep(0.3)
        assert credits(await events(nats_client, namespace, "CREDITS")) == []


async def test_implicit_tls_mailbox(
    settings, nats_client, namespace, streams, redis_client, redis_prefix, tmp_path
):
    cert = make_self_signed_cert(tmp_path)
    async with ImapServer({GMAIL: APP_PASSWORD}, tls_cert=cert) as server:
        event = MailboxRegistered(
            mailbox_id=MAILBOX_ID,
            gmail=GMAIL,
            revision=1,
            imap_host="localhost",
            imap_port=server.port,
            imap_tls=True,
            username=GMAIL,
            password_encrypted=SecretBox(KEY).encrypt(APP_PASSWORD),
        )
        await nats_client.jetstream().publish(
            event.subject(namespace), event.to_bytes(), headers=event.headers()
        )
        app = build_app(settings, ssl_context=cert.client_context())
        await app.start()
        try:
            await wait_idle(redis_client, redis_prefix)
            await server.append(GMAIL, CREDIT_A)
            found = await wait_for(
                nats_client, namespace, "CREDITS", lambda f: len(credits(f)) == 1
            )
        finally:
            await app.stop()
    assert credits(found)[0].credit.amount_tiyin == AMOUNT_A


async def test_new_uidvalidity_resyncs_without_duplicates(
    settings, imap, nats_client, namespace, streams, redis_client, redis_prefix
):
    await register(nats_client, namespace, imap)
    async with running(settings):
        await wait_idle(redis_client, redis_prefix)
        await imap.append(GMAIL, CREDIT_A)
        await wait_for(nats_client, namespace, "CREDITS", lambda f: len(credits(f)) == 1)

    async with ImapServer({GMAIL: APP_PASSWORD}) as renumbered:  # a new UIDVALIDITY
        await renumbered.append(GMAIL, CREDIT_A)
        last_uid = await renumbered.append(GMAIL, CREDIT_B)
        await register(nats_client, namespace, renumbered, rev=2)
        async with running(settings):
            found = await wait_for(
                nats_client, namespace, "CREDITS", lambda f: len(credits(f)) >= 2
            )
            cursor_key = f"{redis_prefix}:mailbox:{MAILBOX_ID}:cursor"
            deadline = time.monotonic() + 5
            while int((await redis_client.hgetall(cursor_key))["last_uid"]) < last_uid:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            found = await events(nats_client, namespace, "CREDITS")
    assert sorted(c.credit.amount_tiyin for c in credits(found)) == sorted([AMOUNT_A, AMOUNT_B])


def publish_retries() -> float:
    return REGISTRY.get_sample_value("autopay_ingest_publish_retries_total") or 0.0


async def test_nats_outage_delays_credits_without_losing_or_skipping_them(
    settings, imap, redis_url, redis_client, redis_prefix, tmp_path
):
    """NATS stops while mail arrives: the watcher keeps retrying, the cursor stays behind the
    unpublished mail, and once NATS is back (same port, same store) every credit arrives once."""
    import nats

    from autopay_contracts import provision_streams
    from autopay_testing.servers import free_port, start_nats

    port = free_port()
    server = start_nats(workdir=tmp_path / "nats", port=port)
    ns = Namespace(settings.namespace)
    settings = settings.model_copy(update={"nats_url": server.url, "publish_backoff_max_s": 0.5})
    client = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    cursor_key = f"{redis_prefix}:mailbox:{MAILBOX_ID}:cursor"
    try:
        await provision_streams(client.jetstream(), ns)
        await register(client, ns, imap)
        async with running(settings):
            await wait_idle(redis_client, redis_prefix)
            uid_a = await imap.append(GMAIL, CREDIT_A)
            await wait_for(client, ns, "CREDITS", lambda f: len(credits(f)) == 1)

            server.stop()
            retries_before = publish_retries()
            await imap.append(GMAIL, CREDIT_B)
            await imap.append(GMAIL, CREDIT_C)
            deadline = time.monotonic() + 20
            while publish_retries() < retries_before + 1:  # it fetched B and is retrying
                assert time.monotonic() < deadline, "the watcher never tried to publish B"
                await asyncio.sleep(0.05)
            cursor = await redis_client.hgetall(cursor_key)
            assert int(cursor["last_uid"]) == uid_a

            server = start_nats(workdir=tmp_path / "nats", port=port)
            found = await wait_for(
                client, ns, "CREDITS", lambda f: len(credits(f)) >= 3, timeout=30
            )
            deadline = time.monotonic() + 10
            while int((await redis_client.hgetall(cursor_key))["last_uid"]) < uid_a + 2:
                assert time.monotonic() < deadline, "the cursor did not reach C"
                await asyncio.sleep(0.05)
            found = await events(client, ns, "CREDITS")
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        server.stop()
    assert [c.credit.amount_tiyin for c in credits(found)] == [AMOUNT_A, AMOUNT_B, AMOUNT_C]


async def test_a_parser_crash_is_recorded_and_the_mailbox_keeps_going(
    settings, imap, nats_client, namespace, streams, redis_client, redis_prefix
):
    """Survives: a bank mail that makes the parser raise (a bug, or input built to crash it).
    It is recorded `unparsed` with the reason and its bytes kept as evidence, the cursor
    passes it, and the next credit still arrives."""
    from autopay_bankmail import parse_notification

    def parse(raw: bytes, **kwargs):
        if b"explode@" in raw:
            raise RecursionError("a mail the parser cannot handle")
        return parse_notification(raw, **kwargs)

    await register(nats_client, namespace, imap)
    async with running(settings, parse=parse):
        await wait_idle(redis_client, redis_prefix)
        await imap.append(GMAIL, resent(CREDIT_B, "explode@info.uzcard.uz"))
        last_uid = await imap.append(GMAIL, CREDIT_A)
        found = await wait_for(
            nats_client,
            namespace,
            "CREDITS",
            lambda f: len(credits(f)) == 1 and any(isinstance(e, CreditRejected) for e in f),
        )
        await wait_cursor(redis_client, redis_prefix, last_uid)
    rejected = [e for e in found if isinstance(e, CreditRejected)]
    assert [(e.kind, e.reason) for e in rejected] == [("unparsed", "parser error: RecursionError")]
    assert rejected[0].message_id == "<explode@info.uzcard.uz>" and rejected[0].evidence_ref
    assert [c.credit.amount_tiyin for c in credits(found)] == [AMOUNT_A]
    health = await redis_client.hgetall(f"{redis_prefix}:mailbox:{MAILBOX_ID}:health")
    assert health["parse_failures"] == "1" and health["credits"] == "1"


async def test_mail_landing_while_another_is_recorded_is_not_left_for_the_next_idle(
    settings, imap, nats_client, namespace, streams, redis_client, redis_prefix
):
    """A mail that lands while the one before it is being recorded (after its search and its
    fetches, before its cursor moves) is announced by no command reply of that mail: the
    watcher goes back to IDLE without searching again, and the server's announcement there
    must bring it in at once, not at the re-IDLE timer (30 s here, past the wait)."""
    from autopay_bankmail import parse_notification

    landed: list[asyncio.Task] = []

    def parse(raw: bytes, **kwargs):
        if not landed:  # the first mail is read: the next one lands while it is recorded
            landed.append(asyncio.get_running_loop().create_task(imap.append(GMAIL, CREDIT_B)))
        return parse_notification(raw, **kwargs)

    await register(nats_client, namespace, imap)
    async with running(settings, parse=parse):
        await wait_idle(redis_client, redis_prefix)
        await imap.append(GMAIL, CREDIT_A)
        found = await wait_for(nats_client, namespace, "CREDITS", lambda f: len(credits(f)) == 2)
        last_uid = await landed[0]
        await wait_cursor(redis_client, redis_prefix, last_uid)
    assert [c.credit.amount_tiyin for c in credits(found)] == [AMOUNT_A, AMOUNT_B]
