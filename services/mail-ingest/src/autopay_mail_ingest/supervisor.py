"""Decides which registered mailboxes this replica watches, and runs one watcher for each.

Every replica reads the whole MAILBOX_CONFIG feed (`apply`), so it knows every registered
mailbox. A lease loop (`start`) runs every `lease/3`, and at once on a configuration change:
heartbeat, renew the held leases that are due (a mailbox whose lease was not renewed is stopped
at once), shed leases above the fair share,
acquire free ones up to it, and keep exactly the leased mailboxes' watchers running. `stop`
is the clean shutdown: watchers stopped, leases released, so the other replicas take over at
once instead of after the lease time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from autopay_contracts import Event, MailboxRegistered, MailboxRemoved, is_sandbox_mailbox
from autopay_mail_ingest import metrics
from autopay_mail_ingest.domain import WatchedMailbox
from autopay_mail_ingest.leases import Lease
from autopay_runtime.logging import get_logger
from autopay_runtime.waiting import wait_event
from autopay_store.mailbox_state import IngestStore, LeaseStore
from autopay_store.secrets import SecretBox

WAKE_COALESCE_S = 0.2
"""How long a round woken by a configuration change waits for the changes that follow it."""


class Watcher(Protocol):
    async def run(self) -> None: ...


@dataclass
class _Running:
    revision: int
    task: asyncio.Task


class MailboxSupervisor:
    def __init__(
        self,
        watcher_factory: Callable[[WatchedMailbox, Lease], Watcher],
        secrets: SecretBox | None,
        store: IngestStore,
        leases: LeaseStore,
        *,
        lease_s: float,
        slack: int = 1,
    ) -> None:
        self.watcher_factory = watcher_factory
        self.secrets = secrets
        self.store = store
        self.leases = leases
        self.lease_s = lease_s
        self.slack = max(0, slack)
        self.log = get_logger(replica_id=leases.replica_id)
        self._mailboxes: dict[str, WatchedMailbox] = {}
        self._revisions: dict[str, int] = {}
        self._unreadable: set[str] = set()
        """Mailboxes whose password no configured key opens (`config_error`)."""
        self._held: dict[str, Lease] = {}
        self._running: dict[str, _Running] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self.live_replicas = 1

    @property
    def mailbox_ids(self) -> set[str]:
        """Mailboxes this replica is watching now."""
        return set(self._running)

    @property
    def leased_ids(self) -> set[str]:
        return set(self._held)

    @property
    def renew_interval_s(self) -> float:
        return self.lease_s / 3

    @property
    def _due_s(self) -> float:
        """A held lease is renewed by a round once this long has passed since its last
        renewal: each round of the timer renews them all, a round soon after renews none."""
        return self.renew_interval_s / 2

    # --- configuration ------------------------------------------------------------------------

    async def apply(self, event: Event) -> None:
        """Apply one MAILBOX_CONFIG event; older revisions than the last applied are ignored."""
        if not isinstance(event, MailboxRegistered | MailboxRemoved):
            return
        async with self._lock:
            if event.revision < self._revisions.get(event.mailbox_id, 0):
                return
            known = self._mailboxes.get(event.mailbox_id)
            if isinstance(event, MailboxRegistered) and _sandbox(event):
                # Never watched: a sandbox card has no mailbox to log in to, and a test key
                # must not be able to make the platform log in anywhere.
                self.log.warning("mailbox.sandbox_not_watched", mailbox_id=event.mailbox_id)
                return
            if isinstance(event, MailboxRegistered):
                if known is not None and known.revision == event.revision:
                    return
                self._revisions[event.mailbox_id] = event.revision
                mailbox = await self._decrypt(event)
                self._set_unreadable(event.mailbox_id, mailbox is None)
                if mailbox is None:
                    self._mailboxes.pop(event.mailbox_id, None)
                    await self._stop(event.mailbox_id)
                    await self._release([event.mailbox_id])
                    return
                self._mailboxes[event.mailbox_id] = mailbox
                if event.mailbox_id in self._running and event.mailbox_id in self._held:
                    await self._stop(event.mailbox_id)
                    self._start(mailbox)
            else:
                self._revisions[event.mailbox_id] = event.revision
                self._mailboxes.pop(event.mailbox_id, None)
                self._set_unreadable(event.mailbox_id, False)
                await self._stop(event.mailbox_id)
                await self._release([event.mailbox_id])
                await self.store.health.forget(event.mailbox_id)
                self.log.info("mailbox.unwatched", mailbox_id=event.mailbox_id)
        self._wake.set()

    def _set_unreadable(self, mailbox_id: str, unreadable: bool) -> None:
        if unreadable:
            self._unreadable.add(mailbox_id)
        else:
            self._unreadable.discard(mailbox_id)
        metrics.UNREADABLE_MAILBOXES.set(len(self._unreadable))

    async def _decrypt(self, event: MailboxRegistered) -> WatchedMailbox | None:
        try:
            if self.secrets is None:
                raise ValueError("AUTOPAY_SECRET_KEYS is not set")
            password = self.secrets.decrypt(event.password_encrypted)
        except Exception as exc:
            detail = f"cannot decrypt the app password ({type(exc).__name__})"
            self.log.error("mailbox.config_error", mailbox_id=event.mailbox_id, detail=detail)
            await self.store.health.set_status(
                event.mailbox_id, event.gmail, "config_error", datetime.now(UTC), detail
            )
            return None
        return WatchedMailbox(
            mailbox_id=event.mailbox_id,
            gmail=event.gmail,
            revision=event.revision,
            imap_host=event.imap_host,
            imap_port=event.imap_port,
            imap_tls=event.imap_tls,
            username=event.username,
            password=password,
            aliases=tuple(event.aliases),
            allow_forwarded=event.allow_forwarded,
        )

    # --- lease loop ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._lease_loop(), name="mailbox-leases")

    async def stop(self) -> None:
        """Clean shutdown: stop the loop and every watcher, release every lease."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
            self._loop_task = None
        async with self._lock:
            for mailbox_id in list(self._running):
                await self._stop(mailbox_id)
            with contextlib.suppress(Exception):
                await self._release(list(self._held))
            self._held.clear()
            metrics.LEASES_HELD.set(0)
            with contextlib.suppress(Exception):
                await self.leases.retire()

    async def _lease_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                async with self._lock:
                    await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning("leases.round_failed", error=repr(exc)[:200])
                async with self._lock:
                    await self._drop_expired()
            self._wake.clear()
            remaining = self.renew_interval_s - (loop.time() - started)
            if remaining > 0 and await wait_event(self._wake, remaining):
                # A configuration change: let the rest of its burst land first, so that
                # 10 000 registrations make a few rounds, not 10 000 (each one O(mailboxes)).
                await asyncio.sleep(min(WAKE_COALESCE_S, remaining))

    async def _round(self) -> None:
        loop = asyncio.get_running_loop()
        margin = min(self.lease_s * 0.2, 2.0)
        await self._drop_expired()
        self.live_replicas = await self.leases.heartbeat()

        # Only the leases due: a round that a configuration change woke moments after the last
        # one must not renew every held lease again (10 000 mailboxes registered one by one
        # would renew 10 000 leases 10 000 times). A lease is renewed at the latest half an
        # interval past a full one, well within its time.
        sent = loop.time()
        due = [m for m, lease in self._held.items() if sent - lease.renewed_at >= self._due_s]
        for mailbox_id, ok in zip(due, await self.leases.renew(due), strict=True):
            if ok:
                self._held[mailbox_id].valid_until = sent + self.lease_s - margin
                self._held[mailbox_id].renewed_at = sent
            else:
                await self._lose(mailbox_id, "taken or expired")

        gone = [m for m in self._held if m not in self._mailboxes]
        for mailbox_id in gone:
            await self._stop(mailbox_id)
        await self._release(gone)

        cap = math.ceil(len(self._mailboxes) / self.live_replicas) + self.slack
        if len(self._held) > cap:
            excess = random.sample(list(self._held), len(self._held) - cap)
            for mailbox_id in excess:
                await self._stop(mailbox_id)
            await self._release(excess)
            self.log.info("leases.shed", count=len(excess), cap=cap, live=self.live_replicas)
        elif len(self._held) < cap:
            free = [m for m in self._mailboxes if m not in self._held]
            random.shuffle(free)
            wanted = cap - len(self._held)
            holders = await self.leases.holders(free)
            free = [m for m in free if holders.get(m) is None][:wanted]
            sent = loop.time()
            for mailbox_id, ok in zip(free, await self.leases.acquire(free), strict=True):
                if ok:
                    lease = Lease.taken(self.leases, mailbox_id)
                    lease.valid_until = sent + self.lease_s - margin
                    lease.renewed_at = sent
                    self._held[mailbox_id] = lease

        for mailbox_id in self._held:
            running = self._running.get(mailbox_id)
            if running is None or running.task.done():
                self._running.pop(mailbox_id, None)
                self._start(self._mailboxes[mailbox_id])
        metrics.LEASES_HELD.set(len(self._held))

    async def _drop_expired(self) -> None:
        now = asyncio.get_running_loop().time()
        for mailbox_id, lease in list(self._held.items()):
            if now >= lease.valid_until:
                await self._lose(mailbox_id, "not renewed in time")

    async def _lose(self, mailbox_id: str, why: str) -> None:
        lease = self._held.pop(mailbox_id, None)
        if lease is not None:
            lease.lost = True
        await self._stop(mailbox_id)
        metrics.LEASES_LOST.inc()
        metrics.LEASES_HELD.set(len(self._held))
        self.log.warning("mailbox.lease_lost", mailbox_id=mailbox_id, reason=why)

    async def _release(self, mailbox_ids: list[str]) -> None:
        for mailbox_id in mailbox_ids:
            lease = self._held.pop(mailbox_id, None)
            if lease is not None:
                lease.lost = True
        if mailbox_ids:
            await self.leases.release(mailbox_ids)
        metrics.LEASES_HELD.set(len(self._held))

    # --- watchers -----------------------------------------------------------------------------

    def _start(self, mailbox: WatchedMailbox) -> None:
        lease = self._held[mailbox.mailbox_id]
        watcher = self.watcher_factory(mailbox, lease)
        task = asyncio.create_task(watcher.run(), name=f"watch-{mailbox.mailbox_id}")
        task.add_done_callback(self._on_done)
        self._running[mailbox.mailbox_id] = _Running(mailbox.revision, task)
        metrics.WATCHED_MAILBOXES.set(len(self._running))
        self.log.info("mailbox.watched", mailbox_id=mailbox.mailbox_id, revision=mailbox.revision)

    def _on_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error(
                "mailbox.watcher_crashed", task=task.get_name(), error=repr(task.exception())
            )

    async def _stop(self, mailbox_id: str) -> None:
        running = self._running.pop(mailbox_id, None)
        metrics.WATCHED_MAILBOXES.set(len(self._running))
        if running is None:
            return
        await _cancel(running.task)


async def _cancel(task: asyncio.Task, retry_s: float = 0.5) -> None:
    """Cancel a watcher and wait until it has ended, cancelling again while it runs on (an
    inner `asyncio.wait_for` may swallow one cancellation on Python 3.11)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_s)
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()


def _sandbox(event: MailboxRegistered) -> bool:
    return event.test_mode or is_sandbox_mailbox(event.mailbox_id)
