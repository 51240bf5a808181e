"""Two mail-ingest replicas sharing 20 mailboxes: leases, failover after a crash, exactly once.

Replica A is a real `python -m autopay_mail_ingest` process that the test SIGKILLs (a crash:
no clean release); replica B runs in the test's event loop. Who watches which mailbox is read
from the IMAP server's side (logged-in sessions per user) and from the lease keys.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from autopay_bankmail.synth import uzcard_credit_email
from autopay_contracts import (
    CreditReceived,
    MailboxRegistered,
    Namespace,
    mailbox_id_for,
    parse_event,
)
from autopay_contracts.local_time import TASHKENT
from autopay_mail_ingest.bootstrap import build_app
from autopay_mail_ingest.settings import IngestSettings
from autopay_store import scripts
from autopay_store.keys import Keys
from autopay_store.secrets import SecretBox
from autopay_testing.imap import ImapServer
from autopay_testing.servers import free_port

KEY = SecretBox.generate_key()
PASSWORD = "abcd efgh ijkl mnop"
MAILBOXES = [f"shop{i:02d}.kassa@gmail.com" for i in range(20)]
LEASE_S = 3.0


def credit_mail(gmail: str, index: int, phase: int) -> bytes:
    amount = 1_000_000 + index * 1_000 + phase * 100
    return uzcard_credit_email(
        to=gmail,
        amount_tiyin=amount,
        card_last4="6412",
        occurred_at=datetime(2026, 5, 16, 9, phase, index, tzinfo=TASHKENT),
        balance_tiyin=50_000_000 + amount,
        message_id=f"<{index}.{phase}@info.uzcard.uz>",
    )


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll `check` until true; returns the seconds it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def credits(nats_client, ns: Namespace) -> list[CreditReceived]:
    js = nats_client.jetstream()
    name = ns.stream_name("CREDITS")
    info = await js.stream_info(name)
    found = []
    if info.state.messages:
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            event = parse_event((await js.get_msg(name, seq)).data)
            if isinstance(event, CreditReceived):
                found.append(event)
    return found


def replica_process(settings: IngestSettings) -> subprocess.Popen:
    env = {
        **os.environ,
        "AUTOPAY_NATS_URL": settings.nats_url,
        "AUTOPAY_REDIS_URL": settings.redis_url,
        "AUTOPAY_NAMESPACE": settings.namespace,
        "AUTOPAY_REDIS_PREFIX": settings.redis_prefix,
        "AUTOPAY_SECRET_KEYS": KEY,
        "AUTOPAY_REPLICA_ID": "replica-a",
        "AUTOPAY_LEASE_SECONDS": str(LEASE_S),
        "AUTOPAY_HTTP_PORT": str(free_port()),
        "AUTOPAY_BACKOFF_INITIAL_S": "0.05",
        "AUTOPAY_BACKOFF_MAX_S": "0.3",
        "AUTOPAY_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "autopay_mail_ingest"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_two_replicas_split_the_mailboxes_and_survive_a_crash(
    nats_url, redis_url, namespace, redis_prefix, nats_client, streams, redis_client
):
    settings = IngestSettings(
        nats_url=nats_url,
        redis_url=redis_url,
        namespace=namespace.root,
        redis_prefix=redis_prefix,
        secret_keys=KEY,
        replica_id="replica-b",
        lease_seconds=LEASE_S,
        imap_connect_timeout_s=5,
        imap_command_timeout_s=5,
        backoff_initial_s=0.05,
        backoff_max_s=0.3,
    )
    lease_keys = [Keys(redis_prefix).mailbox_lease(mailbox_id_for(g)) for g in MAILBOXES]

    async with ImapServer(dict.fromkeys(MAILBOXES, PASSWORD)) as imap:
        js = nats_client.jetstream()
        for gmail in MAILBOXES:
            event = MailboxRegistered(
                mailbox_id=mailbox_id_for(gmail),
                gmail=gmail,
                revision=1,
                imap_host=imap.host,
                imap_port=imap.port,
                imap_tls=False,
                username=gmail,
                password_encrypted=SecretBox(KEY).encrypt(PASSWORD),
            )
            await js.publish(event.subject(namespace), event.to_bytes(), headers=event.headers())

        async def holders() -> list[str | None]:
            return await scripts.get_many(redis_client, lease_keys)

        async def watched_once(owners: set[str]) -> bool:
            held = await holders()
            sessions = imap.sessions_by_user()
            return (
                set(held) == owners
                and all(sessions[g] == 1 for g in MAILBOXES)
                and sum(sessions.values()) == len(MAILBOXES)
            )

        async def all_credited(count: int) -> bool:
            return len(await credits(nats_client, namespace)) >= count

        replica_a = replica_process(settings)
        app_b = build_app(settings)
        try:
            await app_b.start()
            await until(lambda: watched_once({"replica-a", "replica-b"}), 30, "a split")
            split = collections.Counter(await holders())
            assert split["replica-a"] >= 1 and split["replica-b"] >= 1, split

            for i, gmail in enumerate(MAILBOXES):
                await imap.append(gmail, credit_mail(gmail, i, phase=1))
            await until(lambda: all_credited(20), 20, "20 credits before the crash")

            a_mailboxes = [
                g for g, h in zip(MAILBOXES, await holders(), strict=True) if h == "replica-a"
            ]
            replica_a.send_signal(signal.SIGKILL)
            replica_a.wait(10)
            killed_at = time.monotonic()
            for i, gmail in enumerate(MAILBOXES):
                await imap.append(gmail, credit_mail(gmail, i, phase=2))

            await until(lambda: watched_once({"replica-b"}), LEASE_S * 2 + 10, "the takeover")
            took = time.monotonic() - killed_at
            # The lease expires LEASE_S after A's last renewal (at most LEASE_S/3 before the
            # kill); B's next round comes within LEASE_S/3; logging in takes milliseconds.
            assert took <= LEASE_S + 2.5, f"failover took {took:.1f}s"
            last_uids = [
                await imap.append(gmail, credit_mail(gmail, i, phase=3))
                for i, gmail in enumerate(MAILBOXES)
            ]
            await until(lambda: all_credited(60), 20, "60 credits after the failover")
            cursors = [f"{redis_prefix}:mailbox:{mailbox_id_for(g)}:cursor" for g in MAILBOXES]

            async def cursors_done() -> bool:
                values = [int((await redis_client.hgetall(k)).get("last_uid", 0)) for k in cursors]
                return values == last_uids

            await until(cursors_done, 10, "every cursor at the last mail")
            found = await credits(nats_client, namespace)
        finally:
            if replica_a.poll() is None:
                replica_a.kill()
                replica_a.wait(10)
            await app_b.stop()

    assert a_mailboxes, "replica A held no mailbox when it was killed"
    per_mail = collections.Counter(
        (c.credit.gmail, c.credit.amount_tiyin, c.credit.message_id) for c in found
    )
    expected = {
        (g, 1_000_000 + i * 1_000 + phase * 100, f"<{i}.{phase}@info.uzcard.uz>")
        for i, g in enumerate(MAILBOXES)
        for phase in (1, 2, 3)
    }
    assert set(per_mail) == expected
    assert max(per_mail.values()) == 1
    assert len({c.credit.credit_id for c in found}) == 60
