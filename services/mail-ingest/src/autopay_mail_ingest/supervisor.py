"""Starts, restarts and stops one watcher per mailbox as the mailbox configuration changes.

The supervisor is the single place that decides which mailboxes this process watches, so
leases across replicas can later gate `start` without touching the watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from autopay_contracts import Event, MailboxRegistered, MailboxRemoved
from autopay_mail_ingest import metrics
from autopay_mail_ingest.domain import WatchedMailbox
from autopay_mail_ingest.store import IngestStore
from autopay_runtime.logging import get_logger
from autopay_store.secrets import SecretBox


class Watcher(Protocol):
    async def run(self) -> None: ...


@dataclass
class _Running:
    revision: int
    task: asyncio.Task


class Supervisor:
    def __init__(
        self,
        watcher_factory: Callable[[WatchedMailbox], Watcher],
        secrets: SecretBox | None,
        store: IngestStore,
    ) -> None:
        self.watcher_factory = watcher_factory
        self.secrets = secrets
        self.store = store
        self.log = get_logger()
        self._running: dict[str, _Running] = {}
        self._revisions: dict[str, int] = {}
        self._lock = asyncio.Lock()

    @property
    def mailbox_ids(self) -> set[str]:
        return set(self._running)

    async def apply(self, event: Event) -> None:
        """Apply one MAILBOX_CONFIG event; older revisions than the last applied are ignored."""
        if not isinstance(event, MailboxRegistered | MailboxRemoved):
            return
        async with self._lock:
            if event.revision < self._revisions.get(event.mailbox_id, 0):
                return
            if isinstance(event, MailboxRegistered):
                if (
                    event.revision == self._revisions.get(event.mailbox_id)
                    and event.mailbox_id in self._running
                ):
                    return
                self._revisions[event.mailbox_id] = event.revision
                await self._stop(event.mailbox_id)
                mailbox = await self._decrypt(event)
                if mailbox is not None:
                    self._start(mailbox)
            else:
                self._revisions[event.mailbox_id] = event.revision
                await self._stop(event.mailbox_id)
                await self.store.forget_health(event.mailbox_id)
                self.log.info("mailbox.unwatched", mailbox_id=event.mailbox_id)

    async def _decrypt(self, event: MailboxRegistered) -> WatchedMailbox | None:
        try:
            if self.secrets is None:
                raise ValueError("AUTOPAY_SECRET_KEYS is not set")
            password = self.secrets.decrypt(event.password_encrypted)
        except Exception as exc:
            detail = f"cannot decrypt the app password ({type(exc).__name__})"
            self.log.error("mailbox.config_error", mailbox_id=event.mailbox_id, detail=detail)
            await self.store.set_status(
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
            allow_forwarded=event.allow_forwarded,
            test_mode=event.test_mode,
        )

    def _start(self, mailbox: WatchedMailbox) -> None:
        watcher = self.watcher_factory(mailbox)
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
        running.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running.task

    async def stop_all(self) -> None:
        async with self._lock:
            for mailbox_id in list(self._running):
                await self._stop(mailbox_id)
