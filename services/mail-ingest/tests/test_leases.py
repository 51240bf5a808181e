"""Mailbox leases against a real Redis: compare-and-extend / compare-and-delete, the fenced
cursor, and a running replica that loses a lease to another replica (stops at once, publishes
nothing, takes the mailbox back once it is free and catches up exactly once)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from autopay_bankmail.synth import uzcard_credit_email
from autopay_contracts import CreditReceived, MailboxRegistered, mailbox_id_for, parse_event
from autopay_contracts.local_time import TASHKENT
from autopay_mail_ingest.bootstrap import build_app
from autopay_mail_ingest.settings import IngestSettings
from autopay_mail_ingest.supervisor import MailboxSupervisor
from autopay_store.keys import Keys
from autopay_store.mailbox_state import Cursor, IngestStore, LeaseStore
from autopay_store.secrets import SecretBox
from autopay_testing.imap import ImapServer

GMAIL = "lease.kassa@gmail.com"
PASSWORD = "abcd efgh ijkl mnop"
KEY = SecretBox.generate_key()


async def test_leases_are_compare_and_extend_and_compare_and_delete(redis_client, redis_prefix):
    mine = LeaseStore(redis_client, Keys(redis_prefix), "replica-1", lease_s=5)
    other = LeaseStore(redis_client, Keys(redis_prefix), "replica-2", lease_s=5)
    assert await mine.acquire(["m1", "m2"]) == [True, True]
    assert await other.acquire(["m1", "m3"]) == [False, True]
    assert await other.renew(["m1"]) == [False]
    assert await mine.renew(["m1", "m3"]) == [True, False]
    assert 4000 < await redis_client.pttl(mine.lease_key("m1")) <= 5000
    await other.release(["m1"])  # not its lease: nothing happens
    assert await mine.holders(["m1", "m2", "m3", "m4"]) == {
        "m1": "replica-1",
        "m2": "replica-1",
        "m3": "replica-2",
        "m4": None,
    }
    await mine.release(["m1", "m2"])
    assert await other.acquire(["m1"]) == [True]
    assert await mine.heartbeat() == 1
    assert await other.heartbeat() == 2
    await other.retire()
    assert await mine.heartbeat() == 1


async def test_cursor_moves_only_for_the_lease_holder_and_never_back(redis_client, redis_prefix):
    keys = Keys(redis_prefix)
    store = IngestStore(redis_client, keys, evidence_ttl_s=60, dedup_ttl_s=60)
    leases = LeaseStore(redis_client, keys, "replica-1", lease_s=5)
    assert await leases.acquire(["m1"]) == [True]
    fence = (leases.lease_key("m1"), "replica-1")
    assert await store.save_cursor("m1", Cursor(7, 10), fence)
    assert await store.save_cursor("m1", Cursor(7, 4), fence)  # accepted, but not applied
    assert await store.cursor("m1") == Cursor(7, 10)
    await redis_client.set(leases.lease_key("m1"), "replica-2")
    assert not await store.save_cursor("m1", Cursor(7, 11), fence)
    assert await store.cursor("m1") == Cursor(7, 10)
    assert await store.save_cursor("m1", Cursor(8, 1), (leases.lease_key("m1"), "replica-2"))
    assert await store.cursor("m1") == Cursor(8, 1)


async def until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_replica_that_loses_its_lease_stops_and_takes_the_mailbox_back_when_free(
    nats_url, redis_url, namespace, redis_prefix, nats_client, streams, redis_client
):
    settings = IngestSettings(
        nats_url=nats_url,
        redis_url=redis_url,
        namespace=namespace.root,
        redis_prefix=redis_prefix,
        secret_keys=KEY,
        replica_id="replica-1",
        lease_seconds=1.5,
        backoff_initial_s=0.05,
        backoff_max_s=0.3,
    )
    mailbox_id = mailbox_id_for(GMAIL)
    lease_key = Keys(redis_prefix).mailbox_lease(mailbox_id)
    js = nats_client.jetstream()

    async def credits() -> list[CreditReceived]:
        name = namespace.stream_name("CREDITS")
        info = await js.stream_info(name)
        if not info.state.messages:
            return []
        msgs = [await js.get_msg(name, s) for s in range(1, info.state.last_seq + 1)]
        return [e for m in msgs if isinstance(e := parse_event(m.data), CreditReceived)]

    async with ImapServer({GMAIL: PASSWORD}) as imap:
        event = MailboxRegistered(
            mailbox_id=mailbox_id,
            gmail=GMAIL,
            revision=1,
            imap_host=imap.host,
            imap_port=imap.port,
            imap_tls=False,
            username=GMAIL,
            password_encrypted=SecretBox(KEY).encrypt(PASSWORD),
        )
        await js.publish(event.subject(namespace), event.to_bytes(), headers=event.headers())
        app = build_app(settings)
        await app.start()
        try:

            async def watching() -> bool:
                return imap.sessions_by_user()[GMAIL] == 1

            async def not_watching() -> bool:
                return imap.sessions_by_user()[GMAIL] == 0

            await until(watching, 10, "the watcher")
            # Another replica takes the lease (as after a partition): replica-1 must let go.
            await redis_client.set(lease_key, "replica-2", px=60_000)
            await until(not_watching, 3, "the watcher to stop")
            mail = uzcard_credit_email(
                to=GMAIL,
                amount_tiyin=3_000_000,
                card_last4="6412",
                occurred_at=datetime(2026, 5, 16, 9, 0, tzinfo=TASHKENT),
                message_id="<lease-1@info.uzcard.uz>",
            )
            uid = await imap.append(GMAIL, mail)
            assert await redis_client.get(lease_key) == "replica-2"
            assert await not_watching() and await credits() == []

            await redis_client.delete(lease_key)  # replica-2 releases it
            await until(watching, 5, "the watcher to come back")
            await until(lambda: _has(credits, 1), 5, "the caught-up credit")
            cursor_key = f"{redis_prefix}:mailbox:{mailbox_id}:cursor"

            async def cursor_at_mail() -> bool:
                # the credit is published before the cursor moves (it waits for the PubAck)
                cursor = await redis_client.hgetall(cursor_key)
                return int(cursor.get("last_uid", 0)) == uid

            await until(cursor_at_mail, 5, "the cursor at the mail")
            assert await redis_client.get(lease_key) == "replica-1"
        finally:
            await app.stop()
    assert [c.credit.amount_tiyin for c in await credits()] == [3_000_000]
    assert await redis_client.get(lease_key) is None  # released on clean shutdown


async def _has(credits, count: int) -> bool:
    return len(await credits()) >= count


class _CountingLeases(LeaseStore):
    """The real lease store (real Redis), counting how many leases each call renews."""

    renewed = 0

    async def renew(self, mailbox_ids):
        self.renewed += len(mailbox_ids)
        return await super().renew(mailbox_ids)


class _IdleWatcher:
    async def run(self) -> None:
        await asyncio.Event().wait()


def _supervisor(redis_client, redis_prefix, lease_s, supervisor_cls, leases_cls):
    """A supervisor on the real Redis whose watchers only wait (no IMAP)."""
    keys = Keys(redis_prefix)
    leases = leases_cls(redis_client, keys, "replica-1", lease_s=lease_s)
    store = IngestStore(redis_client, keys, evidence_ttl_s=60, dedup_ttl_s=60)
    return supervisor_cls(
        lambda mailbox, lease: _IdleWatcher(), SecretBox(KEY), store, leases, lease_s=lease_s
    )


def _registered(n: int) -> MailboxRegistered:
    gmail = f"burst{n}.kassa@gmail.com"
    return MailboxRegistered(
        mailbox_id=mailbox_id_for(gmail),
        gmail=gmail,
        revision=1,
        imap_host="127.0.0.1",
        imap_port=1,
        imap_tls=False,
        username=gmail,
        password_encrypted=SecretBox(KEY).encrypt(PASSWORD),
    )


async def test_a_burst_of_registrations_does_not_renew_every_lease_each_time(
    redis_client, redis_prefix
):
    """Each registration wakes the lease loop; a round soon after the last renews only the
    leases that are due, so 60 mailboxes registered one by one cost about one renewal each,
    not 60 × 60 / 2 (what made 10 000 mailboxes take a quarter of an hour to connect). The
    leases are still renewed by the timer and none is lost."""
    supervisor = _supervisor(redis_client, redis_prefix, 1.5, MailboxSupervisor, _CountingLeases)
    leases = supervisor.leases
    assert isinstance(leases, _CountingLeases)
    await supervisor.start()
    try:
        for n in range(60):
            await supervisor.apply(_registered(n))
            await asyncio.sleep(0.005)  # each one its own wake, as events arrive
        await until(lambda: _all_held(supervisor, 60), 5, "every lease")
        assert leases.renewed < 60 * 3, leases.renewed
        burst = leases.renewed
        await asyncio.sleep(1.5)  # three renew intervals of a 1.5 s lease
        assert leases.renewed >= burst + 60  # the timer's rounds renew them all
        assert len(supervisor.leased_ids) == 60
        assert await leases.holders(sorted(supervisor.leased_ids)) == dict.fromkeys(
            sorted(supervisor.leased_ids), "replica-1"
        )
    finally:
        await supervisor.stop()


async def _all_held(supervisor: MailboxSupervisor, count: int) -> bool:
    return len(supervisor.leased_ids) == count and len(supervisor.mailbox_ids) == count


class _CountingRounds(MailboxSupervisor):
    rounds = 0

    async def _round(self) -> None:
        self.rounds += 1
        await super()._round()


async def test_a_burst_of_registrations_makes_a_few_rounds_not_one_each(redis_client, redis_prefix):
    """Every round walks every mailbox known, so one round per registration is quadratic in
    the mailboxes (what kept 10 000 from connecting): a burst lands in a few rounds, and every
    mailbox of it is leased and watched within a second."""
    supervisor = _supervisor(redis_client, redis_prefix, 15, _CountingRounds, LeaseStore)
    assert isinstance(supervisor, _CountingRounds)
    await supervisor.start()
    try:
        await asyncio.sleep(0.1)
        before = supervisor.rounds
        for n in range(200):
            await supervisor.apply(_registered(n))
            await asyncio.sleep(0)
        await until(lambda: _all_held(supervisor, 200), 1.5, "every mailbox of the burst")
        assert supervisor.rounds - before <= 5, supervisor.rounds - before
    finally:
        await supervisor.stop()
