"""Header-first ingestion: personal mail is passed unread, large mail is refused from its
headers, and no message, however malformed or large, stops the cursor.

The live tests run against real NATS (JetStream), Redis and a real IMAP server (pymap), with a
byte-counting TCP proxy between the IMAP server and mail-ingest: what crossed the wire is
measured on the server's side, not reported by the service. The acceptance test runs a real
`python -m autopay_mail_ingest` process against a Redis of its own, so that its memory figure
is not disturbed by other tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import aioimaplib
import pytest
from prometheus_client import REGISTRY

from autopay_bankmail import Notification, parse_notification
from autopay_bankmail.synth import BANK_ADDRESS, uzcard_credit_email
from autopay_contracts import (
    CreditReceived,
    CreditRejected,
    Event,
    MailboxRegistered,
    Namespace,
    mailbox_id_for,
    parse_event,
)
from autopay_contracts.local_time import TASHKENT
from autopay_mail_ingest.bootstrap import build_app
from autopay_mail_ingest.domain import WatchedMailbox, body_fetch_items, screen_fetch_items
from autopay_mail_ingest.settings import IngestSettings
from autopay_mail_ingest.watcher import MailboxWatcher, SessionLost
from autopay_store.keys import Keys
from autopay_store.mailbox_state import IngestStore
from autopay_store.secrets import SecretBox
from autopay_testing.hostile_mail import MailCase, genuine_cases, hostile_cases
from autopay_testing.imap import ImapServer
from autopay_testing.servers import free_port, start_redis

GMAIL = "shop.kassa@gmail.com"
APP_PASSWORD = "abcd efgh ijkl mnop"
MAILBOX_ID = mailbox_id_for(GMAIL)
KEY = SecretBox.generate_key()
MIB = 1 << 20


def credit_mail(amount_tiyin: int, minute: int, message_id: str | None = None) -> bytes:
    return uzcard_credit_email(
        to=GMAIL,
        amount_tiyin=amount_tiyin,
        card_last4="6412",
        occurred_at=datetime(2026, 5, 16, 9, minute, tzinfo=TASHKENT),
        balance_tiyin=10_000_000 + amount_tiyin,
        message_id=message_id or f"<{amount_tiyin}.{minute}@info.uzcard.uz>",
    )


def padded(raw: bytes, size: int) -> bytes:
    """`raw` with text lines appended to its body until it is `size` bytes long."""
    line = b"A" * 998 + b"\r\n"
    return raw + line * ((size - len(raw)) // len(line) + 1)


def personal_mail(marker: str, index: int, size: int = 0) -> bytes:
    """A mail from a friend: the marker is in its sender, Message-ID, subject and body."""
    raw = (
        f"From: Friend {marker} <{marker}.sender{index}@example.org>\r\n"
        f"To: {GMAIL}\r\n"
        f"Subject: {marker} photos {index}\r\n"
        f"Date: Sat, 16 May 2026 09:00:00 +0500\r\n"
        f"Message-ID: <{marker}.{index}@example.org>\r\n"
        f"\r\n"
        f"{marker} private text {index}\r\n"
    ).encode()
    return padded(raw, size) if size else raw


# --- a byte-counting proxy in front of the IMAP server ---------------------------------------


class CountingProxy:
    """Forwards TCP connections to the IMAP server and counts the bytes it sends the client."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.host = "127.0.0.1"
        self.port = 0
        self.bytes_to_client = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> CountingProxy:
        self._server = await asyncio.start_server(self._client, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            try:
                while data := await src.read(65536):
                    if count:
                        self.bytes_to_client += len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        try:
            await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))
        finally:
            self._writers.difference_update((writer, up_writer))


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def settings(nats_url, redis_url, namespace, redis_prefix) -> IngestSettings:
    return IngestSettings(
        nats_url=nats_url,
        redis_url=redis_url,
        namespace=namespace.root,
        redis_prefix=redis_prefix,
        secret_keys=KEY,
        imap_connect_timeout_s=5,
        imap_command_timeout_s=10,
        reidle_interval_s=30,
        backoff_initial_s=0.05,
        backoff_max_s=0.3,
    )


@pytest.fixture
async def imap() -> AsyncIterator[ImapServer]:
    async with ImapServer({GMAIL: APP_PASSWORD}) as server:
        yield server


async def register(
    nats_client, ns: Namespace, host: str, port: int, gmail: str = GMAIL, **config: object
) -> None:
    event = MailboxRegistered(
        mailbox_id=mailbox_id_for(gmail),
        gmail=gmail,
        revision=1,
        imap_host=host,
        imap_port=port,
        imap_tls=False,
        username=gmail,
        password_encrypted=SecretBox(KEY).encrypt(APP_PASSWORD),
        **config,
    )
    await nats_client.jetstream().publish(
        event.subject(ns), event.to_bytes(), headers=event.headers()
    )


async def events(nats_client, ns: Namespace, base: str) -> list[Event]:
    js = nats_client.jetstream()
    info = await js.stream_info(ns.stream_name(base))
    if not info.state.messages:
        return []
    return [
        parse_event((await js.get_msg(ns.stream_name(base), seq)).data)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def until(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[misc]
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.05)


def cursor_at(redis, prefix: str, uid: int, mailbox_id: str = MAILBOX_ID) -> Callable[[], object]:
    async def check() -> bool:
        cursor = await redis.hgetall(f"{prefix}:mailbox:{mailbox_id}:cursor")
        return int(cursor.get("last_uid", cursor.get(b"last_uid", 0))) >= uid

    return check


def connected(redis, prefix: str, mailbox_id: str = MAILBOX_ID) -> Callable[[], object]:
    async def check() -> bool:
        status = await redis.hget(f"{prefix}:mailbox:{mailbox_id}:health", "status")
        return status in ("connected", b"connected")

    return check


def credits_of(found: list[Event]) -> list[CreditReceived]:
    return [e for e in found if isinstance(e, CreditReceived)]


def rejected_of(found: list[Event]) -> list[CreditRejected]:
    return [e for e in found if isinstance(e, CreditRejected)]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels or None) or 0.0


async def append_all(imap: ImapServer, raws: list[bytes], user: str = GMAIL) -> list[int]:
    """APPEND every mail over one IMAP connection; returns their UIDs."""
    client = imap.client(timeout=60)
    await client.wait_hello_from_server()
    await client.login(user, APP_PASSWORD)
    uids = []
    try:
        for raw in raws:
            response = await client.append(raw, mailbox="INBOX")
            assert response.result == "OK", response
            text = b" ".join(bytes(line) for line in response.lines).decode()
            uids.append(int(text.split("APPENDUID", 1)[1].split()[1].rstrip("]")))
    finally:
        with contextlib.suppress(Exception):
            await client.logout()
    return uids


# --- live, in-process -------------------------------------------------------------------------


async def test_bank_mail_over_the_cap_is_refused_from_its_headers_and_never_downloaded(
    settings, imap, nats_client, namespace, streams, redis_client, redis_prefix
):
    """Survives: a 20 MiB mail From the bank's own address (anyone can write that From), sent
    under the Message-ID the next genuine notification will carry. It is recorded `rejected:
    too_large` from its headers; its body never crosses the wire (counted at the IMAP server's
    side) nor lands in Redis; the cursor passes it, and the genuine credit is not taken for a
    duplicate of it."""
    genuine_id = "<1005800.6@info.uzcard.uz>"
    big = padded(credit_mail(3_000_000, 5, genuine_id), 20 * MIB)
    fetched_before = sample("autopay_ingest_mails_fetched_total")
    too_large_before = sample("autopay_ingest_too_large_total")
    async with CountingProxy(imap.host, imap.port) as proxy:
        await register(nats_client, namespace, proxy.host, proxy.port)
        app = build_app(settings)
        await app.start()
        try:
            await until(connected(redis_client, redis_prefix), 10, "the mailbox to connect")
            big_uid, last_uid = await append_all(imap, [big, credit_mail(1_005_800, 6)])
            assert credit_mail(1_005_800, 6).count(genuine_id.encode()) == 1
            await until(cursor_at(redis_client, redis_prefix, last_uid), 30, "the cursor")
            found = await events(nats_client, namespace, "CREDITS")
        finally:
            await app.stop()
    refused = rejected_of(found)
    assert [c.credit.amount_tiyin for c in credits_of(found)] == [1_005_800]
    assert [(e.kind, e.refusal, e.message_id) for e in refused] == [
        ("rejected", "too_large", genuine_id)
    ]
    assert credits_of(found)[0].credit.message_id == genuine_id
    assert refused[0].evidence_ref is None and "over the size cap" in refused[0].reason
    assert big_uid < last_uid
    assert proxy.bytes_to_client < MIB, proxy.bytes_to_client
    assert sample("autopay_ingest_mails_fetched_total") - fetched_before == 1
    assert sample("autopay_ingest_too_large_total") - too_large_before == 1
    for key in [k async for k in redis_client.scan_iter(match=f"{redis_prefix}*")]:
        if await redis_client.type(key) == "string":
            assert await redis_client.strlen(key) < settings.max_message_bytes, key


FORWARDING = "kassa.forwards@gmail.com"
"""A second mailbox of the attack test, the one that accepts forwarded texts."""
ALIAS = "cashier@shop.example"


def message_id_of(raw: bytes) -> str:
    head = raw.partition(b"\r\n\r\n")[0].decode()
    return next(
        line.split(":", 1)[1].strip()
        for line in head.split("\r\n")
        if line.lower().startswith("message-id:")
    )


def numbered(build, mailbox: str, first_amount: int) -> list[MailCase]:
    """Every case of `build` for `mailbox`, each with an amount of its own (so no two genuine
    ones are one credit to the dedup, and each outcome can be told apart)."""
    when = datetime(2026, 5, 16, 9, 1, tzinfo=TASHKENT)
    count = len(build(mailbox, "6412", first_amount, when))
    return [build(mailbox, "6412", first_amount + 100 * i, when)[i] for i in range(count)]


async def test_live_every_attack_class_is_refused_and_genuine_mail_still_pays(
    settings, nats_client, namespace, streams, redis_client, redis_prefix
):
    """Every attack class of the threat model, through a live mail-ingest reading a real IMAP
    server. Survives: anyone mailing the merchant's Gmail with any headers and envelope sender
    (quoted-local-part domains, comment injection through the envelope sender, SPF-only,
    dmarc=fail, misaligned and lookalike signing domains, a lookalike authserv-id, display-name
    and double-From spoofs), a genuine notification for the attacker's own card re-sent to the
    merchant (replayed), and spoofed forwarders. None of them publishes a `credit.received`;
    each bank candidate is recorded `rejected` with its own refusal, and a mail whose headers
    make it no candidate is passed unread. Genuine mail in every real shape (no DMARC record,
    DKIM only, an organizational-domain signature, To in a dotted, +tag or googlemail.com
    spelling, a declared alias, a forwarded SMS) is credited."""
    plain = {  # forwarders off: the bank-mail cases
        "hostile": [c for c in numbered(hostile_cases, GMAIL, 7_000_000) if not c.allow_forwarded],
        "genuine": [c for c in numbered(genuine_cases, GMAIL, 8_000_000) if not c.allow_forwarded],
    }
    forwarding = {  # forwarders on: the forwarder cases
        "hostile": [c for c in numbered(hostile_cases, FORWARDING, 7_500_000) if c.allow_forwarded],
        "genuine": [c for c in numbered(genuine_cases, FORWARDING, 8_500_000) if c.allow_forwarded],
    }
    assert len(plain["hostile"]) >= 15 and forwarding["hostile"] and forwarding["genuine"]
    rejected_before = {
        c.refusal: sample("autopay_ingest_rejected_total", reason=c.refusal)
        for group in (plain, forwarding)
        for c in group["hostile"]
    }
    async with ImapServer({GMAIL: APP_PASSWORD, FORWARDING: APP_PASSWORD}) as imap:
        await register(nats_client, namespace, imap.host, imap.port, aliases=(ALIAS,))
        await register(
            nats_client, namespace, imap.host, imap.port, FORWARDING, allow_forwarded=True
        )
        app = build_app(settings)
        await app.start()
        try:
            for gmail in (GMAIL, FORWARDING):
                await until(connected(redis_client, redis_prefix, mailbox_id_for(gmail)), 10, gmail)
            for gmail, group in ((GMAIL, plain), (FORWARDING, forwarding)):
                raws = [c.raw for c in group["hostile"] + group["genuine"]]
                last_uid = (await append_all(imap, raws, user=gmail))[-1]
                await until(
                    cursor_at(redis_client, redis_prefix, last_uid, mailbox_id_for(gmail)),
                    30,
                    f"the cursor of {gmail}",
                )
            found = await events(nats_client, namespace, "CREDITS")
        finally:
            await app.stop()

    credited = {c.credit.message_id: c for c in credits_of(found)}
    refused = {e.message_id: e for e in rejected_of(found)}
    for gmail, group in ((GMAIL, plain), (FORWARDING, forwarding)):
        for case in group["hostile"]:
            message_id = message_id_of(case.raw)
            assert message_id not in credited, f"{case.name} was credited"
            if case.candidate:
                assert message_id in refused, f"{case.name} was not recorded"
                event = refused[message_id]
                assert (event.kind, event.refusal) == ("rejected", case.refusal), case.name
                assert event.mailbox_id == mailbox_id_for(gmail), case.name
            else:
                assert message_id not in refused, f"{case.name} was read, not passed"
        for case in group["genuine"]:
            message_id = message_id_of(case.raw)
            assert message_id in credited, f"{case.name}: {refused.get(message_id)}"
            assert credited[message_id].credit.mailbox_id == mailbox_id_for(gmail)
    amounts = sorted(c.credit.amount_tiyin for c in credits_of(found))
    genuine = plain["genuine"] + forwarding["genuine"]
    assert len(amounts) == len(genuine) == len(set(amounts))
    for refusal in {c.refusal for g in (plain, forwarding) for c in g["hostile"] if c.candidate}:
        expected = sum(
            1
            for g in (plain, forwarding)
            for c in g["hostile"]
            if c.candidate and c.refusal == refusal
        )
        grown = sample("autopay_ingest_rejected_total", reason=refusal) - rejected_before[refusal]
        assert grown == expected, refusal


async def test_a_parse_result_no_event_can_hold_is_recorded_unparsed(
    settings, imap, nats_client, namespace, streams, redis_client, redis_prefix
):
    """Survives: a parser result that fails the event schema (a bug in one bank format, or
    a mail built to provoke it), and a credit whose fields fail validation. Both are recorded
    as `credit.rejected` and passed; the next credit still arrives."""

    def parse(raw: bytes, **kwargs) -> Notification:
        if b"<bogus-kind@" in raw:
            return Notification(kind="no-such-kind", reason="?")  # type: ignore[arg-type]
        if b"<bad-card@" in raw:
            return Notification(
                kind="credit",
                amount_tiyin=100,
                currency="UZS",
                card_last4="٦٤١٢",  # Arabic-Indic digits: not a card number
                occurred_at=datetime(2026, 5, 16, 9, 0, tzinfo=TASHKENT),
            )
        return parse_notification(raw, **kwargs)

    await register(nats_client, namespace, imap.host, imap.port)
    app = build_app(settings, parse=parse)
    await app.start()
    try:
        await until(connected(redis_client, redis_prefix), 10, "the mailbox to connect")
        *_, last_uid = await append_all(
            imap,
            [
                credit_mail(1_000_100, 1, "<bogus-kind@info.uzcard.uz>"),
                credit_mail(1_000_200, 2, "<bad-card@info.uzcard.uz>"),
                credit_mail(1_000_300, 3),
            ],
        )
        await until(cursor_at(redis_client, redis_prefix, last_uid), 15, "the cursor")
        found = await events(nats_client, namespace, "CREDITS")
    finally:
        await app.stop()
    assert [c.credit.amount_tiyin for c in credits_of(found)] == [1_000_300]
    refused = {e.message_id: e for e in rejected_of(found)}
    bogus = refused["<bogus-kind@info.uzcard.uz>"]
    assert (bogus.kind, bogus.reason) == (
        "unparsed",
        "cannot record the parsed mail: ValidationError",
    )
    assert bogus.evidence_ref
    bad_card = refused["<bad-card@info.uzcard.uz>"]
    assert bad_card.kind == "rejected" and "card_last4" in bad_card.reason


# --- the watcher against hand-written server replies ------------------------------------------


class ScriptedImap:
    """Stands in for an aioimaplib client: answers each UID FETCH with the next scripted
    reply, as aioimaplib would return it (literals as `bytearray` lines)."""

    def __init__(self, *replies: tuple[str, list[bytes | bytearray]]) -> None:
        self.replies = list(replies)
        self.commands: list[tuple[str, str, str]] = []

    async def uid(self, command: str, uids: str, items: str) -> aioimaplib.Response:
        self.commands.append((command, uids, items))
        result, lines = self.replies.pop(0)
        return aioimaplib.Response(result, lines)


class Published:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event) -> None:
        self.events.append(event)


def bank_header(message_id: str) -> bytearray:
    return bytearray(f"From: UZCARD <{BANK_ADDRESS}>\r\nMessage-ID: {message_id}\r\n\r\n".encode())


def watcher_for(settings, redis_client, redis_prefix, publisher, parse=parse_notification):
    mailbox = WatchedMailbox(MAILBOX_ID, GMAIL, 1, "127.0.0.1", 1, False, GMAIL, APP_PASSWORD)
    store = IngestStore(redis_client, Keys(redis_prefix), evidence_ttl_s=60, dedup_ttl_s=60)
    return MailboxWatcher(
        mailbox,
        settings=settings,
        store=store,
        publisher=publisher,
        connect_gate=asyncio.Semaphore(1),
        parse=parse,
    )


async def test_malformed_fetch_replies_are_recorded_and_passed(
    settings, redis_client, redis_prefix
):
    """Survives: a server reply that is malformed for some mails (no body literal, an
    unreadable RFC822.SIZE, a message it refuses with `NO`). Candidates among them are
    recorded `unparsed`, the rest passed, and the cursor reaches the last UID."""
    credit = credit_mail(1_005_800, 2, "<good@info.uzcard.uz>")
    client = ScriptedImap(
        (
            "OK",
            [
                b'1 FETCH (UID 5 RFC822.SIZE 900 INTERNALDATE "16-May-2026 04:01:00 +0000" '
                b"BODY[HEADER.FIELDS (FROM MESSAGE-ID)]<0> {60}",
                bank_header("<no-body@info.uzcard.uz>"),
                b")",
                b'2 FETCH (UID 6 RFC822.SIZE zz INTERNALDATE "garbage" BODY[HEADER.FIELDS '
                b"(FROM MESSAGE-ID)]<0> {60}",
                bank_header("<good@info.uzcard.uz>"),
                b")",
                b"3 FETCH (UID 7 RFC822.SIZE 10 BODY[HEADER.FIELDS (FROM MESSAGE-ID)]<0> {9}",
                bytearray(b"From: x\r\n"),
                b")",
                b"UID FETCH completed.",
            ],
        ),
        (
            "OK",
            [
                b"1 FETCH (UID 5 BODY[]<0> NIL)",
                b"2 FETCH (UID 6 BODY[]<0> {%d}" % len(credit),
                bytearray(credit),
                b")",
                b"UID FETCH completed.",
            ],
        ),
        ("NO", [b"Some messages could not be FETCHed (Failure)"]),
    )
    published = Published()
    settings = settings.model_copy(update={"screen_chunk": 3})
    watcher = watcher_for(settings, redis_client, redis_prefix, published)
    await watcher._ingest_uids(client, 77, [5, 6, 7, 8])

    assert client.commands[0] == ("fetch", "5,6,7", screen_fetch_items())
    assert client.commands[1] == ("fetch", "5,6", body_fetch_items(settings.max_message_bytes))
    assert client.commands[2][:2] == ("fetch", "8")
    no_body, credit_event = published.events
    assert isinstance(no_body, CreditRejected)
    assert (no_body.kind, no_body.message_id, no_body.evidence_ref) == (
        "unparsed",
        "<no-body@info.uzcard.uz>",
        None,
    )
    assert no_body.reason == "the server sent no message body"
    assert isinstance(credit_event, CreditReceived)
    assert credit_event.credit.amount_tiyin == 1_005_800
    cursor = await redis_client.hgetall(f"{redis_prefix}:mailbox:{MAILBOX_ID}:cursor")
    assert cursor == {"uidvalidity": "77", "last_uid": "8"}


async def test_a_busy_server_holds_the_cursor(settings, redis_client, redis_prefix):
    """Survives: Gmail refusing a FETCH because it is throttling. That is not about the mail,
    so the session ends (to reconnect and retry) and the cursor does not pass the mail."""
    client = ScriptedImap(("NO", [b"[THROTTLED] Account exceeded command limits"]))
    watcher = watcher_for(settings, redis_client, redis_prefix, Published())
    with pytest.raises(SessionLost):
        await watcher._ingest_uids(client, 77, [5])
    assert await redis_client.exists(f"{redis_prefix}:mailbox:{MAILBOX_ID}:cursor") == 0


def test_screening_fetch_items_are_bounded():
    assert screen_fetch_items() == (
        "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (From Message-ID)]<0.8192>)"
    )
    assert body_fetch_items(262144) == "(UID BODY.PEEK[]<0.262145>)"


# --- live acceptance: a mail-ingest process, its own Redis ------------------------------------


def ingest_process(settings: IngestSettings, redis_url: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "AUTOPAY_NATS_URL": settings.nats_url,
        "AUTOPAY_REDIS_URL": redis_url,
        "AUTOPAY_NAMESPACE": settings.namespace,
        "AUTOPAY_REDIS_PREFIX": settings.redis_prefix,
        "AUTOPAY_SECRET_KEYS": KEY,
        "AUTOPAY_HTTP_PORT": str(settings.http_port),
        "AUTOPAY_BACKOFF_INITIAL_S": "0.05",
        "AUTOPAY_BACKOFF_MAX_S": "0.3",
        "AUTOPAY_LOG_LEVEL": "DEBUG",  # the most the service ever logs
    }
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "autopay_mail_ingest"], env=env, stdout=out, stderr=out
        )


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def redis_dump(client) -> bytes:
    """Every key and value of a Redis, as one lowercase blob to search."""
    parts: list[bytes] = []
    async for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = await client.type(key)
        if kind == b"string":
            parts.append(await client.get(key) or b"")
        elif kind == b"hash":
            for field, value in (await client.hgetall(key)).items():
                parts += [field, value]
        elif kind == b"zset":
            parts += [m for m, _ in await client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"set":
            parts += list(await client.smembers(key))
        elif kind == b"list":
            parts += await client.lrange(key, 0, -1)
        else:
            parts.append(kind)
    return b"\n".join(parts).lower()


async def nats_dump(nats_client, stream_names: list[str]) -> bytes:
    """Every message (subject, headers, data) of the given streams, as one lowercase blob."""
    js = nats_client.jetstream()
    parts: list[bytes] = []
    for name in stream_names:
        info = await js.stream_info(name)
        if not info.state.messages:
            continue
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(name, seq)
            parts += [msg.subject.encode(), repr(msg.headers).encode(), msg.data or b""]
    return b"\n".join(parts).lower()


async def test_live_personal_and_huge_mail_cost_nothing_and_the_credit_arrives(
    settings, imap, nats_client, namespace, streams, tmp_path
):
    """Acceptance, against a real `python -m autopay_mail_ingest` process. Survives: a 20 MiB
    non-bank mail and 100 personal mails landing before a bank notification (the attack or
    accident that used to fill Redis and OOM-kill every replica in turn). The credit arrives;
    Redis grows by less than 1 MiB, the process by less than 30 MiB; nothing of the personal
    mail (sender, Message-ID, subject, body) is in Redis, in any NATS stream or in the logs."""
    import psutil
    import redis.asyncio as aioredis

    marker = "prsnl" + uuid.uuid4().hex[:12]
    personal = [personal_mail(marker, 0, size=20 * MIB)]
    personal += [personal_mail(marker, i) for i in range(1, 101)]
    bank = credit_mail(5_003_700, 1)
    log = tmp_path / "mail-ingest.log"
    settings = settings.model_copy(update={"http_port": free_port()})

    with start_redis() as private_redis:
        redis = aioredis.Redis.from_url(private_redis.url)
        async with CountingProxy(imap.host, imap.port) as proxy:
            await register(nats_client, namespace, proxy.host, proxy.port)
            memory_at_start = int((await redis.info("memory"))["used_memory"])
            process = ingest_process(settings, private_redis.url, log)
            peak_rss = 0
            sampling = True

            async def sample_rss() -> None:
                nonlocal peak_rss
                while sampling:
                    with contextlib.suppress(psutil.Error):
                        rss = psutil.Process(process.pid).memory_info().rss
                        peak_rss = max(peak_rss, rss)
                    await asyncio.sleep(0.01)

            try:
                await until(connected(redis, settings.redis_prefix), 30, "the mailbox")
                await asyncio.sleep(0.5)  # settled in IDLE
                rss_idle = psutil.Process(process.pid).memory_info().rss
                memory_idle = int((await redis.info("memory"))["used_memory"])
                bytes_before = proxy.bytes_to_client
                sampler = asyncio.create_task(sample_rss())
                uids = await append_all(imap, [*personal, bank])
                await until(cursor_at(redis, settings.redis_prefix, uids[-1]), 60, "the cursor")
                found = await events(nats_client, namespace, "CREDITS")
                sampling = False
                await sampler
                rss_after = psutil.Process(process.pid).memory_info().rss
                memory_after = int((await redis.info("memory"))["used_memory"])
                metrics = await asyncio.to_thread(
                    lambda: urllib.request.urlopen(
                        f"http://127.0.0.1:{settings.http_port}/metrics", timeout=5
                    ).read()
                )
                stored = await redis_dump(redis)
            finally:
                sampling = False
                stop_process(process)
                await redis.aclose()
        wire_bytes = proxy.bytes_to_client - bytes_before
    published = await nats_dump(nats_client, streams)
    logged = log.read_bytes().lower()

    figures = {
        "redis_growth_bytes": memory_after - memory_at_start,
        "redis_growth_from_idle_bytes": memory_after - memory_idle,
        "rss_idle_mib": round(rss_idle / MIB, 1),
        "rss_growth_mib": round((rss_after - rss_idle) / MIB, 2),
        "rss_peak_growth_mib": round((peak_rss - rss_idle) / MIB, 2),
        "imap_bytes_to_client": wire_bytes,
    }
    print("\nmail-ingest header-first figures:", figures)

    assert [c.credit.amount_tiyin for c in credits_of(found)] == [5_003_700]
    assert rejected_of(found) == []
    assert figures["redis_growth_bytes"] < MIB
    assert peak_rss - rss_idle < 30 * MIB
    assert wire_bytes < MIB  # the 20 MiB mail never crossed the wire
    assert b"autopay_ingest_personal_skipped_total 101.0" in metrics
    assert b"autopay_ingest_mails_fetched_total 1.0" in metrics
    assert marker.encode() not in stored
    assert marker.encode() not in published
    assert b"credit.received" in logged  # the log was written, at DEBUG level
    assert marker.encode() not in logged
