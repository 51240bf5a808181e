"""mail-ingest at scale: RSS of one process watching 1 000 and 10 000 mailboxes in IDLE, and
the latency from a mail landing in a mailbox to its `credit.received` event.

Everything is started here and torn down at the end: nats-server, redis-server, one local IMAP
server process (`python -m autopay_testing.imap`, pymap, any user / one password, a
self-signed implicit-TLS front like Gmail's port 993) and one `python -m autopay_mail_ingest`
per phase. Phase `tls` (the realistic one: Gmail is TLS-only) gives
`ingest_rss_mb_1000_mailboxes` and the latencies; phase `plain` gives the plaintext RSS as an
extra figure; phase `many` (`AUTOPAY_BENCH_INGEST_MANY_MAILBOXES`, 10 000) gives
`ingest_rss_mb_10000_mailboxes`, or, when not all of them are in IDLE within its wait, how many
were and the RSS then. RSS is read from the service process once its `/metrics` shows every mailbox
in IDLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aioimaplib
import httpx
import nats
import psutil

from autopay_bankmail.synth import uzcard_credit_email
from autopay_contracts import (
    CreditReceived,
    MailboxRegistered,
    Namespace,
    mailbox_id_for,
    parse_event,
    provision_streams,
)
from autopay_devtools.bench import percentile, stop_processes
from autopay_store.secrets import SecretBox
from autopay_testing.imap import TlsCert, make_self_signed_cert
from autopay_testing.servers import ServerProcess, free_port, start_nats, start_redis

MAILBOXES = int(os.environ.get("AUTOPAY_BENCH_INGEST_MAILBOXES", "1000"))
MANY_MAILBOXES = int(os.environ.get("AUTOPAY_BENCH_INGEST_MANY_MAILBOXES", "10000"))
"""The second size, RSS only (`ingest_rss_mb_10000_mailboxes`); 0 leaves it out."""
MAILS = int(os.environ.get("AUTOPAY_BENCH_INGEST_MAILS", "50"))
PASSWORD = "bench-app-password"  # noqa: S105 - the local test server's only password
MAILBOXES_PER_IMAP_SERVER = 4_000
"""The test IMAP server's TLS front proxies each client to its own plaintext port: three file
descriptors a TLS mailbox, and a process may hold 20 000 here. Above this many mailboxes the
bench starts more server processes and spreads the mailboxes over them (Gmail is many)."""
IDLE_TIMEOUT_S = 90.0
"""For 1 000 mailboxes; a larger count waits in proportion (connections come slower as the
process fills)."""


def _log(message: str) -> None:
    print(f"[bench ingest] {message}", file=sys.stderr, flush=True)


def _gmail(i: int) -> str:
    return f"bench{i:04d}.kassa@gmail.com"


class _ImapProcess:
    def __init__(self, workdir: Path, cert: TlsCert | None = None) -> None:
        cert = cert or make_self_signed_cert(workdir / "tls")
        self.cert = cert
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "autopay_testing.imap",
                "--port",
                str(free_port()),
                "--any-user-password",
                PASSWORD,
                "--tls-cert",
                str(cert.cert_file),
                "--tls-key",
                str(cert.key_file),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            raise RuntimeError("the IMAP server process did not start")
        info = json.loads(line)
        self.host = info["host"]
        self.tls_port = info["port"]
        self.plain_port = info["plain_port"]

    def stop(self) -> None:
        stop_processes([self.process], 10)


class _Ingest:
    """One `python -m autopay_mail_ingest` process for one namespace."""

    def __init__(self, nats_url: str, redis_url: str, ns: str, key: str, ca_file: Path) -> None:
        self.http_port = free_port()
        env = {
            **os.environ,
            "AUTOPAY_NATS_URL": nats_url,
            "AUTOPAY_REDIS_URL": redis_url,
            "AUTOPAY_NAMESPACE": ns,
            "AUTOPAY_REDIS_PREFIX": f"bench-{ns}",
            "AUTOPAY_SECRET_KEYS": key,
            "AUTOPAY_HTTP_PORT": str(self.http_port),
            "AUTOPAY_LOG_LEVEL": "WARNING",
            "SSL_CERT_FILE": str(ca_file),  # the default SSLContext trusts the bench's cert
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autopay_mail_ingest"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def idle_mailboxes(self, http: httpx.AsyncClient) -> int:
        try:
            response = await http.get(f"http://127.0.0.1:{self.http_port}/metrics")
        except httpx.HTTPError:
            return 0
        for line in response.text.splitlines():
            if line.startswith("autopay_ingest_idle_mailboxes "):
                return int(float(line.split()[1]))
        return 0

    def rss_mb(self) -> float:
        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        stop_processes([self.process], 20)


async def _register(
    js, ns: Namespace, key: str, imaps: list[_ImapProcess], tls: bool, mailboxes: int
) -> None:
    box = SecretBox(key)
    encrypted = box.encrypt(PASSWORD)
    for i in range(mailboxes):
        gmail = _gmail(i)
        imap = imaps[i % len(imaps)]
        event = MailboxRegistered(
            mailbox_id=mailbox_id_for(gmail),
            gmail=gmail,
            revision=1,
            imap_host="localhost" if tls else imap.host,
            imap_port=imap.tls_port if tls else imap.plain_port,
            imap_tls=tls,
            username=gmail,
            password_encrypted=encrypted,
        )
        await js.publish(event.subject(ns), event.to_bytes(), headers=event.headers())


async def _wait_all_idle(
    ingest: _Ingest, mailboxes: int, partial: bool = False
) -> tuple[float, int]:
    """Seconds until every mailbox is in IDLE, and how many are. `partial`: a timeout ends
    the wait with the count reached instead of failing."""
    started = time.monotonic()
    timeout = IDLE_TIMEOUT_S * max(1.0, mailboxes / 500)
    async with httpx.AsyncClient(timeout=2.0) as http:
        while (idle := await ingest.idle_mailboxes(http)) < mailboxes:
            if ingest.process.poll() is not None:
                raise RuntimeError("mail-ingest exited")
            if time.monotonic() - started > timeout:
                if partial:
                    return time.monotonic() - started, idle
                raise TimeoutError(f"only {idle}/{mailboxes} mailboxes in IDLE")
            await asyncio.sleep(0.25)
    return time.monotonic() - started, mailboxes


async def _rss_when_idle(ingest: _Ingest) -> float:
    """The highest of a few samples over two seconds once all mailboxes are in IDLE."""
    samples = []
    for _ in range(5):
        samples.append(ingest.rss_mb())
        await asyncio.sleep(0.5)
    return max(samples)


async def _latencies(nc, ns: Namespace, imaps: list[_ImapProcess]) -> list[float]:
    """Append MAILS credits to random mailboxes one at a time; ms from APPEND to the event."""
    arrived: dict[str, float] = {}
    waiting: dict[str, asyncio.Event] = {}

    async def on_msg(msg) -> None:
        event = parse_event(msg.data)
        if isinstance(event, CreditReceived) and event.credit.message_id:
            arrived[event.credit.message_id] = time.perf_counter()
            if done := waiting.get(event.credit.message_id):
                done.set()

    sub = await nc.subscribe(CreditReceived.subject_pattern(ns), cb=on_msg)
    rng = random.Random(20260516)
    results: list[float] = []
    try:
        for n in range(MAILS):
            mailbox = rng.randrange(MAILBOXES)
            gmail, imap = _gmail(mailbox), imaps[mailbox % len(imaps)]
            message_id = f"<bench-{n}-{rng.getrandbits(32)}@info.uzcard.uz>"
            raw = uzcard_credit_email(
                to=gmail,
                amount_tiyin=1_000_000 + n * 100,
                card_last4="6412",
                occurred_at=datetime.now(UTC),
                message_id=message_id,
            )
            waiting[message_id] = done = asyncio.Event()
            client = aioimaplib.IMAP4(imap.host, imap.plain_port, timeout=10)
            await client.wait_hello_from_server()
            await client.login(gmail, PASSWORD)
            started = time.perf_counter()
            response = await client.append(raw, mailbox="INBOX")
            if response.result != "OK":
                raise RuntimeError(f"APPEND failed: {response.result}")
            with contextlib.suppress(Exception):
                await client.logout()
            await asyncio.wait_for(done.wait(), 10)
            results.append((arrived[message_id] - started) * 1000)
    finally:
        await sub.unsubscribe()
    return results


async def _phase(
    name: str,
    nats_url: str,
    redis_url: str,
    imaps: list[_ImapProcess],
    tls: bool,
    mailboxes: int = MAILBOXES,
    timed: bool = True,
) -> dict:
    ns = Namespace(f"bench{name}{os.getpid()}")
    key = SecretBox.generate_key()
    nc = await nats.connect(nats_url)
    ingest = None
    streams: list[str] = []
    try:
        js = nc.jetstream()
        streams = await provision_streams(js, ns)
        await _register(js, ns, key, imaps, tls, mailboxes)
        ingest = _Ingest(nats_url, redis_url, ns.root, key, imaps[0].cert.cert_file)
        connect_s, idle = await _wait_all_idle(ingest, mailboxes, partial=not timed)
        rss = await _rss_when_idle(ingest)
        _log(
            f"{name}: {idle}/{mailboxes} mailboxes in IDLE after {connect_s:.1f}s, RSS {rss:.0f} MB"
        )
        figures = {"rss_mb": round(rss, 1), "connect_s": round(connect_s, 2), "idle": idle}
        if tls and timed:
            latencies = await _latencies(nc, ns, imaps)
            figures["p50_ms"] = round(percentile(latencies, 0.50), 1)
            figures["p99_ms"] = round(percentile(latencies, 0.99), 1)
            _log(f"{name}: mail → credit p50 {figures['p50_ms']} ms p99 {figures['p99_ms']} ms")
        return figures
    finally:
        if ingest is not None:
            ingest.stop()
        with contextlib.suppress(Exception):
            for stream in streams:
                await nc.jetstream().delete_stream(stream)
        await nc.close()


async def _run(workdir: Path) -> dict:
    servers: list[ServerProcess] = []
    imaps: list[_ImapProcess] = []
    try:
        nats_server = start_nats(workdir / "nats")
        servers.append(nats_server)
        redis_server = start_redis(workdir / "redis")
        servers.append(redis_server)
        imap = _ImapProcess(workdir)
        imaps.append(imap)
        tls = await _phase("tls", nats_server.url, redis_server.url, [imap], tls=True)
        plain = await _phase("plain", nats_server.url, redis_server.url, [imap], tls=False)
        many = None
        if MANY_MAILBOXES:
            for n in range(1, math.ceil(MANY_MAILBOXES / MAILBOXES_PER_IMAP_SERVER)):
                imaps.append(_ImapProcess(workdir / f"imap{n}", cert=imap.cert))
            urls = (nats_server.url, redis_server.url)
            many = await _phase("many", *urls, imaps, True, MANY_MAILBOXES, timed=False)
    finally:
        for imap_server in imaps:
            imap_server.stop()
        for server in reversed(servers):
            server.stop()
    extra: dict[str, float] = {}
    if many is not None and many["idle"] == MANY_MAILBOXES:
        extra = {
            f"ingest_rss_mb_{MANY_MAILBOXES}_mailboxes": many["rss_mb"],
            f"ingest_all_idle_s_{MANY_MAILBOXES}_mailboxes": many["connect_s"],
        }
    elif many is not None:  # not all in IDLE in time: what was reached, and its RSS
        extra = {
            f"ingest_idle_reached_of_{MANY_MAILBOXES}_mailboxes": many["idle"],
            f"ingest_rss_mb_at_reached_of_{MANY_MAILBOXES}": many["rss_mb"],
            f"ingest_reached_after_s_of_{MANY_MAILBOXES}": many["connect_s"],
        }
    return extra | {
        "ingest_rss_mb_1000_mailboxes": tls["rss_mb"],
        "ingest_rss_mb_1000_mailboxes_plaintext": plain["rss_mb"],
        "ingest_mail_to_credit_p50_ms": tls["p50_ms"],
        "ingest_mail_to_credit_p99_ms": tls["p99_ms"],
        "ingest_all_idle_s_1000_mailboxes": tls["connect_s"],
    }


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="autopay-bench-ingest-") as tmp:
        return asyncio.run(_run(Path(tmp)))
