"""One IMAP connection per mailbox: login, catch up from the cursor, IDLE, fetch, repeat.

Every fetched mail becomes exactly one event (credit.received or credit.rejected) published to
JetStream; the mailbox cursor advances only after JetStream acknowledged it. Any sign of a dead
connection (BYE, connection lost, a command timing out) throws the client away and reconnects
with capped, jittered backoff; a refused login slows down to minutes. A publish that JetStream
does not acknowledge (NATS down) is retried with backoff on the same session, the cursor
waiting for it. With a `Lease`, the watcher stops as soon as the lease is lost, and neither
publishes nor moves the cursor after that (see `leases.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import aioimaplib

from autopay_bankmail import Notification, parse_notification
from autopay_contracts import (
    Event,
    MailboxAuthFailed,
    MailboxConnected,
    MailboxDown,
    MailboxUp,
)
from autopay_mail_ingest import metrics
from autopay_mail_ingest.domain import (
    FetchedMessage,
    SelectedMailbox,
    WatchedMailbox,
    backoff_delay,
    build_outcome,
    classify_login_failure,
    parse_fetch,
    parse_search,
    parse_select,
    raw_digest,
    uid_set,
    unparsed,
)
from autopay_mail_ingest.leases import Lease, LeaseLost
from autopay_mail_ingest.settings import IngestSettings
from autopay_mail_ingest.store import Cursor, IngestStore
from autopay_runtime.logging import get_logger

T = TypeVar("T")
ParseFn = Callable[..., Notification]
FETCH_ITEMS = "(UID INTERNALDATE BODY.PEEK[])"


class Publisher(Protocol):
    async def publish(self, event: Event) -> Any: ...


class SessionLost(Exception):
    """The IMAP connection is unusable; reconnect."""


class LoginRefused(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def utcnow() -> datetime:
    return datetime.now(UTC)


class MailboxWatcher:
    def __init__(
        self,
        mailbox: WatchedMailbox,
        *,
        settings: IngestSettings,
        store: IngestStore,
        publisher: Publisher,
        connect_gate: asyncio.Semaphore,
        ssl_context: ssl.SSLContext | None = None,
        parse: ParseFn = parse_notification,
        clock: Callable[[], datetime] = utcnow,
        lease: Lease | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.settings = settings
        self.store = store
        self.publisher = publisher
        self.gate = connect_gate
        self.ssl_context = ssl_context
        self.parse = parse
        self.clock = clock
        self.lease = lease
        self.log = get_logger(mailbox_id=mailbox.mailbox_id)
        self.status: str = "connecting"
        self._client: aioimaplib.IMAP4 | None = None
        self._lost = asyncio.Event()
        self._news = asyncio.Event()
        self._session_ok = False
        self._last_uid = 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch until cancelled; never returns otherwise and never raises on mail problems."""
        attempt = 0
        await self._set_status("connecting")
        while True:
            self._session_ok = False
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except LeaseLost:
                self.log.warning("mailbox.lease_lost")
                return
            except LoginRefused as exc:
                delay = await self._on_login_refused(exc, attempt)
            except Exception as exc:
                delay = await self._on_session_lost(exc, attempt)
            else:  # pragma: no cover - _session only ends by raising
                delay = 0.0
            finally:
                self._discard_client()
            attempt = 0 if self._session_ok else attempt + 1
            await asyncio.sleep(delay)

    def _discard_client(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.protocol.transport is not None:
            client.protocol.conn_lost_cb = None
            client.protocol.transport.close()

    async def _on_login_refused(self, exc: LoginRefused, attempt: int) -> float:
        if exc.kind == "auth":
            metrics.AUTH_FAILURES.inc()
            self.log.warning("mailbox.auth_failed", detail=exc.detail)
            if self.status != "auth_failed":
                await self._set_status("auth_failed", exc.detail)
                await self._emit(MailboxAuthFailed, exc.detail)
            return backoff_delay(0, self.settings.auth_retry_s, self.settings.auth_retry_s)
        if exc.kind == "throttled":
            self.log.warning("mailbox.throttled", detail=exc.detail)
            await self._mark_down("throttled", exc.detail)
            return backoff_delay(
                0, self.settings.throttled_retry_s, self.settings.throttled_retry_s
            )
        return await self._on_session_lost(exc, attempt)

    async def _on_session_lost(self, exc: BaseException, attempt: int) -> float:
        metrics.RECONNECTS.inc()
        detail = f"{type(exc).__name__}: {exc}"[:300]
        self.log.warning("mailbox.session_lost", error=detail, attempt=attempt)
        await self._mark_down("down", detail)
        return backoff_delay(attempt, self.settings.backoff_initial_s, self.settings.backoff_max_s)

    async def _mark_down(self, status: str, detail: str) -> None:
        was = self.status
        await self._set_status(status, detail)
        if was in ("connected", "connecting"):
            await self._emit(MailboxDown, detail)

    async def _on_connected(self) -> None:
        was = self.status
        self._session_ok = True
        await self._set_status("connected", connected=True)
        if was == "connecting":
            await self._emit(MailboxConnected)
        elif was != "connected":
            await self._emit(MailboxUp)
        self.log.info("mailbox.connected", previous=was)

    def _leased(self) -> bool:
        return self.lease is None or self.lease.valid()

    async def _set_status(
        self, status: str, detail: str | None = None, connected: bool = False
    ) -> None:
        self.status = status
        if not self._leased():
            return
        with contextlib.suppress(Exception):
            await self.store.set_status(
                self.mailbox.mailbox_id,
                self.mailbox.gmail,
                status,
                self.clock(),
                detail,
                connected=connected,
            )

    async def _emit(self, event_type: type[Event], detail: str | None = None) -> None:
        event = event_type(
            mailbox_id=self.mailbox.mailbox_id,
            gmail=self.mailbox.gmail,
            at=self.clock(),
            detail=detail,
        )
        if not self._leased():
            return
        try:
            await self.publisher.publish(event)
        except Exception as exc:
            self.log.warning("mailbox.event_not_published", type=event.type, error=repr(exc))

    # --- one IMAP session ---------------------------------------------------------------------

    def _new_client(self) -> aioimaplib.IMAP4:
        mbx, timeout = self.mailbox, self.settings.imap_command_timeout_s
        if mbx.imap_tls:
            context = self.ssl_context or ssl.create_default_context()
            client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                mbx.imap_host, mbx.imap_port, timeout=timeout, ssl_context=context
            )
        else:
            client = aioimaplib.IMAP4(mbx.imap_host, mbx.imap_port, timeout=timeout)
        self._lost = lost = asyncio.Event()
        client.protocol.conn_lost_cb = lambda exc: lost.set()
        self._news = news = asyncio.Event()
        protocol = client.protocol
        untagged = protocol._untagged_response

        def spy(line: bytes) -> Any:
            # aioimaplib drops an EXISTS that arrives with another command's reply; note it.
            if b"EXISTS" in line.upper():
                news.set()
            return untagged(line)

        protocol._untagged_response = spy
        return client

    async def _guard(self, awaitable: Awaitable[T], limit_s: float | None = None) -> T:
        """Await an IMAP step, failing fast when the connection drops or the step stalls
        (aioimaplib leaves pending commands hanging on connection loss)."""
        timeout = self.settings.imap_command_timeout_s if limit_s is None else limit_s
        task = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {task, lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
        if task in done:
            return task.result()
        task.cancel()
        if lost in done:
            raise SessionLost("connection lost")
        raise TimeoutError(f"IMAP step took more than {timeout:.0f}s")

    async def _session(self) -> None:
        client = self._client = self._new_client()
        async with self.gate:
            await self._guard(client.wait_hello_from_server(), self.settings.imap_connect_timeout_s)
            response = await self._guard(client.login(self.mailbox.username, self.mailbox.password))
        if response.result != "OK":
            text = " ".join(bytes(line).decode(errors="replace") for line in response.lines)
            raise LoginRefused(classify_login_failure(text), text[:300])
        response = await self._guard(client.select("INBOX"))
        if response.result != "OK":
            raise SessionLost(f"SELECT INBOX refused: {response.result}")
        selected = parse_select(response.lines)
        await self._on_connected()
        await self._catch_up(client, selected)
        while True:
            await self._idle_until_news(client)
            await self._fetch_new(client, selected.uidvalidity)

    async def _idle_until_news(self, client: aioimaplib.IMAP4) -> None:
        """IDLE until the server announces mail (EXISTS) or the re-IDLE interval passes."""
        interval = self.settings.reidle_interval_s
        idle = await self._guard(client.idle_start(timeout=interval * 2))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + interval
        metrics.IDLE_MAILBOXES.inc()
        try:
            while (remaining := deadline - loop.time()) > 0:
                try:
                    push = await self._guard(
                        client.wait_server_push(timeout=remaining), limit_s=remaining + 5
                    )
                except TimeoutError:
                    break
                if push == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    break
                text = b" ".join(bytes(line) for line in push).upper()
                if b"BYE" in text:
                    raise SessionLost("server said BYE")
                if b"EXISTS" in text:
                    break
        finally:
            metrics.IDLE_MAILBOXES.dec()
        client.idle_done()
        await self._guard(idle)
        queue = client.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()

    async def _catch_up(self, client: aioimaplib.IMAP4, selected: SelectedMailbox) -> None:
        cursor = await self.store.cursor(self.mailbox.mailbox_id)
        if cursor is not None and cursor.uidvalidity == selected.uidvalidity:
            self._last_uid = cursor.last_uid
            await self._fetch_new(client, selected.uidvalidity)
            return
        # No cursor yet, or the server renumbered the mailbox: read back a bounded window;
        # the dedup markers keep already-ingested mail from being published twice.
        self.log.info("mailbox.resync", reason="uidvalidity changed" if cursor else "first watch")
        self._last_uid = 0
        cutoff = self.clock() - timedelta(seconds=self.settings.initial_lookback_s)
        since = (cutoff - timedelta(days=1)).strftime("%d-%b-%Y")
        response = await self._guard(client.uid_search("SINCE", since, charset=None))
        if response.result != "OK":
            raise SessionLost(f"UID SEARCH refused: {response.result}")
        await self._ingest_uids(client, selected.uidvalidity, parse_search(response.lines), cutoff)
        floor = (selected.uidnext or 1) - 1
        if self._last_uid < floor:
            self._last_uid = floor
            await self._save_cursor(Cursor(selected.uidvalidity, floor))
        await self._fetch_new(client, selected.uidvalidity)

    async def _fetch_new(self, client: aioimaplib.IMAP4, uidvalidity: int) -> None:
        """Ingest everything above the cursor, searching again while the server announces
        mail (mail that lands meanwhile is announced inside these commands' replies)."""
        announced_but_empty = 0
        while announced_but_empty < 3:
            self._news.clear()
            # `n:*` always matches the last message, even one older than n: filter by UID.
            response = await self._guard(
                client.uid_search("UID", f"{self._last_uid + 1}:*", charset=None)
            )
            if response.result != "OK":
                raise SessionLost(f"UID SEARCH refused: {response.result}")
            uids = [uid for uid in parse_search(response.lines) if uid > self._last_uid]
            if uids:
                announced_but_empty = 0
                await self._ingest_uids(client, uidvalidity, uids)
            elif self._news.is_set():
                announced_but_empty += 1
            else:
                return

    async def _ingest_uids(
        self,
        client: aioimaplib.IMAP4,
        uidvalidity: int,
        uids: list[int],
        cutoff: datetime | None = None,
    ) -> None:
        size = max(1, self.settings.fetch_chunk)
        for start in range(0, len(uids), size):
            chunk = uids[start : start + size]
            response = await self._guard(client.uid("fetch", uid_set(chunk), FETCH_ITEMS))
            if response.result != "OK":
                raise SessionLost(f"UID FETCH refused: {response.result}")
            for message in sorted(parse_fetch(response.lines), key=lambda m: m.uid):
                if message.uid <= self._last_uid:
                    continue
                old = cutoff is not None and message.internal_date is not None
                if not (old and message.internal_date < cutoff):
                    await self._ingest(message)
                await self._save_cursor(Cursor(uidvalidity, message.uid))
                self._last_uid = message.uid

    async def _save_cursor(self, cursor: Cursor) -> None:
        fence = None
        if self.lease is not None:
            self.lease.check()
            fence = (self.lease.key, self.lease.owner)
        if not await self.store.save_cursor(self.mailbox.mailbox_id, cursor, fence):
            raise LeaseLost(self.mailbox.mailbox_id)

    async def _publish(self, event: Event) -> None:
        """Publish until JetStream acknowledges (the event's `Nats-Msg-Id` makes a retry whose
        first try was stored after all a no-op); stops only when the lease is lost."""
        attempt = 0
        while True:
            if self.lease is not None:
                self.lease.check()
            try:
                await self.publisher.publish(event)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.PUBLISH_RETRIES.inc()
                delay = backoff_delay(
                    attempt, self.settings.backoff_initial_s, self.settings.publish_backoff_max_s
                )
                self.log.warning(
                    "event.publish_retry",
                    event_id=event.event_id,
                    attempt=attempt,
                    retry_in_s=round(delay, 2),
                    error=repr(exc)[:200],
                )
                attempt += 1
                await asyncio.sleep(delay)

    # --- one mail -----------------------------------------------------------------------------

    async def _ingest(self, message: FetchedMessage) -> None:
        metrics.MAILS_FETCHED.inc()
        mbx = self.mailbox
        raw = message.raw
        received_at = message.internal_date or self.clock()
        try:
            notification = self.parse(
                raw,
                mailbox=mbx.gmail,
                allow_forwarded=mbx.allow_forwarded,
                trusted_receiver=self.settings.trusted_receiver,
            )
        except Exception as exc:
            self.log.error("mail.parser_error", uid=message.uid, error=type(exc).__name__)
            notification = unparsed(f"parser error: {type(exc).__name__}")
        digest = raw_digest(raw)
        outcome = build_outcome(
            notification,
            mailbox=mbx,
            raw=raw,
            received_at=received_at,
            evidence_ref=self.store.evidence_key(mbx.mailbox_id, digest),
        )
        if await self.store.already_seen(mbx.mailbox_id, outcome.message_key, outcome.fingerprint):
            metrics.DUPLICATES.inc()
            self.log.info("mail.duplicate", uid=message.uid, event_id=outcome.event.event_id)
            return
        await self.store.keep_evidence(mbx.mailbox_id, digest, raw)
        await self._publish(outcome.event)
        await self.store.mark_seen(mbx.mailbox_id, outcome.message_key, outcome.fingerprint)
        event = outcome.event
        if outcome.is_credit:
            metrics.CREDITS.inc()
            counters: tuple[str, ...] = ("credits",)
            self.log.info(
                "credit.received",
                uid=message.uid,
                credit_id=event.credit.credit_id,
                amount_tiyin=event.credit.amount_tiyin,
                card_last4=event.credit.card_last4,
            )
        else:
            metrics.REJECTED.inc()
            counters = ("rejected", "parse_failures") if event.kind == "unparsed" else ("rejected",)
            self.log.info(
                "credit.rejected",
                uid=message.uid,
                record_id=event.record_id,
                kind=event.kind,
                reason=event.reason,
            )
        with contextlib.suppress(Exception):
            await self.store.record_mail(mbx.mailbox_id, received_at, counters)
