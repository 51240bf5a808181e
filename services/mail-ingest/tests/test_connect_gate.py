"""The connect gate bounds connection attempts, not only logins: a mailbox waiting for the gate
has opened no connection yet (10 000 opened at once overflow the server's accept backlog, and
the dropped SYNs come back after the greeting's time limit). Real IMAP server, real Redis."""

from __future__ import annotations

import asyncio
import contextlib

from autopay_mail_ingest.domain import WatchedMailbox
from autopay_mail_ingest.settings import IngestSettings
from autopay_mail_ingest.watcher import MailboxWatcher
from autopay_store.keys import Keys
from autopay_store.mailbox_state import IngestStore
from autopay_testing.imap import ImapServer

GMAIL = "gate.kassa@gmail.com"
PASSWORD = "abcd efgh ijkl mnop"


class _Published:
    """Where the watcher's events go; this test looks only at the connections."""

    async def publish(self, event) -> None:
        pass


async def test_a_mailbox_waiting_for_the_gate_has_not_connected(redis_client, redis_prefix):
    settings = IngestSettings(redis_prefix=redis_prefix, backoff_initial_s=0.05)
    store = IngestStore(redis_client, Keys(redis_prefix), evidence_ttl_s=60, dedup_ttl_s=60)
    gate = asyncio.Semaphore(1)
    async with ImapServer({GMAIL: PASSWORD}) as imap:
        mailbox = WatchedMailbox(
            mailbox_id="mbxgate",
            gmail=GMAIL,
            revision=1,
            imap_host=imap.host,
            imap_port=imap.port,
            imap_tls=False,
            username=GMAIL,
            password=PASSWORD,
        )
        watcher = MailboxWatcher(
            mailbox, settings=settings, store=store, publisher=_Published(), connect_gate=gate
        )
        await gate.acquire()  # another mailbox is connecting
        task = asyncio.create_task(watcher.run())
        try:
            await asyncio.sleep(0.5)
            assert imap.connections_accepted == 0
            gate.release()
            for _ in range(100):
                if imap.sessions_by_user().get(GMAIL) == 1:
                    break
                await asyncio.sleep(0.05)
            assert imap.connections_accepted == 1
            assert imap.sessions_by_user()[GMAIL] == 1
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
