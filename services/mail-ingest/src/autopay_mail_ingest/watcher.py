"""One IMAP connection per mailbox: login, catch up from the cursor, IDLE, fetch, repeat.

New mail is screened before it is read: one FETCH of `domain.screen_fetch_items()` per
`screen_chunk` UIDs returns each mail's size, arrival time and a bounded slice of its `From` /
`Message-ID` headers, and `domain.screen` sorts it:

- personal mail (no bank sender, nor the mailbox itself when forwarders are on) is passed
  unread: never fetched whole, stored, published or logged, only counted;
- a candidate over `max_message_bytes` becomes `credit.rejected` (`too_large`) from its
  headers alone, its body never fetched and no evidence kept;
- the other candidates are read whole, `fetch_chunk` at a time (so one mailbox holds at most
  `fetch_chunk × max_message_bytes` of mail), parsed, kept as evidence and published as
  exactly one `credit.received` or `credit.rejected` event.

The cursor passes every mail whatever it holds: a candidate that cannot be read, parsed or
turned into an event is published as `credit.rejected` (`unparsed`, with the reason) and
passed. It stops only for infrastructure: the mailbox cursor advances only after JetStream
acknowledged the mail's event, a publish that JetStream does not acknowledge (NATS down) is
retried with backoff on the same session, and a Redis error ends the session, which
reconnects and reads the same mail again. Any sign of a dead connection (BYE, connection lost,
a command timing out) throws the client away and reconnects with capped, jittered backoff; a
refused login slows down to minutes. With a `Lease`, the watcher stops as soon as the lease is
lost, and neither publishes nor moves the cursor after that (see `leases.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import aioimaplib
from opentelemetry.trace import SpanKind

from autopay_bankmail import Notification, parse_notification
from autopay_contracts import (
    CreditReceived,
    CreditRejected,
    Event,
    MailboxAuthFailed,
    MailboxConnected,
    MailboxDown,
    MailboxUp,
)
from autopay_mail_ingest import metrics
from autopay_mail_ingest.compat.aioimaplib import on_untagged
from autopay_mail_ingest.domain import (
    Outcome,
    ScreenedMessage,
    SelectedMailbox,
    WatchedMailbox,
    backoff_delay,
    body_fetch_items,
    build_outcome,
    classify_login_failure,
    fetch_refusal_is_transient,
    header_outcome,
    parse_fetch,
    parse_screen,
    parse_search,
    parse_select,
    raw_digest,
    rejection_label,
    screen,
    screen_fetch_items,
    too_large_outcome,
    uid_set,
    unparsed,
)
from autopay_mail_ingest.leases import Lease, LeaseLost
from autopay_mail_ingest.settings import IngestSettings
from autopay_runtime import tracing
from autopay_runtime.logging import get_logger
from autopay_store.mailbox_state import Cursor, IngestStore

T = TypeVar("T")
TRACER = tracing.tracer("autopay_mail_ingest")
ParseFn = Callable[..., Notification]
Evidence = tuple[str, bytes]
"""(sha256 of the bytes, the bytes) of a candidate read whole: kept as evidence."""


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
        try:
            await self._watch()
        finally:
            metrics.MAILBOXES.forget(self.mailbox.mailbox_id)

    async def _watch(self) -> None:
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
        metrics.MAILBOXES.set_state(self.mailbox.mailbox_id, status)
        with contextlib.suppress(Exception):
            await self.store.health.set_status(
                self.mailbox.mailbox_id,
                self.mailbox.gmail,
                status,
                self.clock(),
                detail,
                connected=connected,
            )

    async def _emit(
        self,
        event_type: type[MailboxAuthFailed | MailboxConnected | MailboxDown | MailboxUp],
        detail: str | None = None,
    ) -> None:
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

        def note_news(line: bytes) -> None:
            # aioimaplib drops an EXISTS that arrives with another command's reply; note it.
            if b"EXISTS" in line.upper():
                news.set()

        on_untagged(client, note_news)
        return client

    async def _guard(self, awaitable: Awaitable[T], limit_s: float | None = None) -> T:
        """Await an IMAP step, failing fast when the connection drops or the step stalls
        (aioimaplib leaves pending commands hanging on connection loss)."""
        timeout = self.settings.imap_command_timeout_s if limit_s is None else limit_s
        _raise_if_cancelling()
        task = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {task, lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            lost.cancel()
        if task in done:
            _raise_if_cancelling()
            return task.result()
        task.cancel()
        if lost in done:
            raise SessionLost("connection lost")
        raise TimeoutError(f"IMAP step took more than {timeout:.0f}s")

    async def _session(self) -> None:
        # The connection is opened inside the gate: 10 000 mailboxes connecting at once
        # overflow the server's accept backlog, and a dropped SYN is retried after 1, 3, 7,
        # 15 s, past the greeting's time limit, over and over.
        async with self.gate:
            client = self._client = self._new_client()
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
        """IDLE until the server announces mail (EXISTS) or the re-IDLE interval passes.

        `_news` holds any EXISTS since the last search: one the server sent on its own after
        the last command (no server repeats it at IDLE) skips the IDLE, one during it ends it."""
        if self._news.is_set():
            return
        interval = self.settings.reidle_interval_s
        idle = await self._guard(client.idle_start(timeout=interval * 2))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + interval
        metrics.IDLE_MAILBOXES.inc()
        try:
            while not self._news.is_set() and (remaining := deadline - loop.time()) > 0:
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
        mail (mail that lands meanwhile is announced inside these commands' replies, or at
        the next IDLE: a search after mail was read but nothing announced finds nothing)."""
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
                if not self._news.is_set():
                    return
            elif self._news.is_set():
                announced_but_empty += 1
            else:
                return
        self._news.clear()  # announced thrice and found nothing: wait for the next news

    async def _ingest_uids(
        self,
        client: aioimaplib.IMAP4,
        uidvalidity: int,
        uids: list[int],
        cutoff: datetime | None = None,
    ) -> None:
        """Screen new mail by its headers and read only bank candidates (`domain.screen`).

        Every UID here is passed by the cursor whatever its mail holds: personal mail unread,
        a candidate over the cap recorded from its headers, a candidate that cannot be read or
        parsed recorded `unparsed`. Only an IMAP, Redis or NATS failure stops here, by raising
        before the cursor passes the mail (the session reconnects and reads it again).
        """
        step = self.settings.screen_chunk
        for start in range(0, len(uids), step):
            chunk = [uid for uid in uids[start : start + step] if uid > self._last_uid]
            if chunk:
                await self._ingest_chunk(client, uidvalidity, chunk, cutoff)

    async def _ingest_chunk(
        self,
        client: aioimaplib.IMAP4,
        uidvalidity: int,
        chunk: list[int],
        cutoff: datetime | None,
    ) -> None:
        cap = self.settings.max_message_bytes
        screened = await self._screen(client, chunk)
        verdicts = {
            uid: screen(screened.get(uid), mailbox=self.mailbox, max_bytes=cap, cutoff=cutoff)
            for uid in chunk
        }
        candidates = [uid for uid in chunk if verdicts[uid] == "candidate"]
        bodies: dict[int, bytes] = {}
        asked: set[int] = set()
        for uid in chunk:
            verdict = verdicts[uid]
            if verdict == "personal":
                metrics.PERSONAL_SKIPPED.inc()
                continue
            if verdict == "unscreened":
                metrics.UNSCREENED.inc()
                self.log.warning("mail.unscreened", uid=uid)
                continue
            if verdict == "old":
                continue
            message = screened[uid]
            if verdict == "too_large":
                outcome, evidence = self._too_large(message, message.size or 0)
            else:
                if uid not in asked:  # read the next candidates whole; drop the last batch
                    batch = candidates[candidates.index(uid) :][: self.settings.fetch_chunk]
                    bodies = await self._read(client, batch)
                    asked = set(batch)
                outcome, evidence = self._candidate_outcome(message, bodies.pop(uid, None))
            if outcome is not None:
                await self._record(uid, outcome, evidence, Cursor(uidvalidity, uid))
            else:
                await self._save_cursor(Cursor(uidvalidity, uid))
            self._last_uid = uid
        if chunk[-1] > self._last_uid:  # the rest of the chunk needed nothing recorded
            await self._save_cursor(Cursor(uidvalidity, chunk[-1]))
            self._last_uid = chunk[-1]

    async def _screen(
        self, client: aioimaplib.IMAP4, uids: list[int]
    ) -> dict[int, ScreenedMessage]:
        response = await self._guard(client.uid("fetch", uid_set(uids), screen_fetch_items()))
        self._check_fetch(response)
        return parse_screen(response.lines)

    async def _read(self, client: aioimaplib.IMAP4, uids: list[int]) -> dict[int, bytes]:
        """The candidates' bytes (each at most one byte over the cap; see `body_fetch_items`)."""
        items = body_fetch_items(self.settings.max_message_bytes)
        response = await self._guard(client.uid("fetch", uid_set(uids), items))
        self._check_fetch(response)
        wanted = set(uids)
        bodies = {m.uid: m.raw for m in parse_fetch(response.lines) if m.uid in wanted}
        metrics.MAILS_FETCHED.inc(len(bodies))
        return bodies

    def _check_fetch(self, response: Any) -> None:
        """A FETCH the server refused for its messages (`NO`, e.g. Gmail's "Some messages could
        not be FETCHed") is message-specific: the messages it left out are handled as missing.
        Any other failure, or a `NO` that says the server is busy, ends the session."""
        if response.result == "OK":
            return
        text = bytes(response.lines[-1]).decode(errors="replace") if response.lines else ""
        if response.result == "NO" and not fetch_refusal_is_transient(text):
            self.log.warning("imap.fetch_refused", detail=text[:200])
            return
        raise SessionLost(f"UID FETCH refused: {response.result} {text[:200]}")

    def _guarded(
        self, uid: int, build: Callable[[], Outcome], evidence: Evidence | None = None
    ) -> tuple[Outcome | None, Evidence | None]:
        """`build()`, or None when even that raises: the mail is then passed, with a log line."""
        try:
            return build(), evidence
        except Exception as exc:
            self.log.error("mail.unrecordable", uid=uid, error=type(exc).__name__)
            return None, None

    def _too_large(
        self, message: ScreenedMessage, size: int
    ) -> tuple[Outcome | None, Evidence | None]:
        received_at = message.internal_date or self.clock()
        return self._guarded(
            message.uid,
            lambda: too_large_outcome(
                message,
                mailbox=self.mailbox,
                size=size,
                max_bytes=self.settings.max_message_bytes,
                received_at=received_at,
            ),
        )

    def _candidate_outcome(
        self, message: ScreenedMessage, raw: bytes | None
    ) -> tuple[Outcome | None, Evidence | None]:
        """What a candidate becomes; nothing a mail holds makes this raise."""
        mbx, cap = self.mailbox, self.settings.max_message_bytes
        received_at = message.internal_date or self.clock()
        uid = message.uid

        def header_only(reason: str) -> tuple[Outcome | None, Evidence | None]:
            return self._guarded(
                uid,
                lambda: header_outcome(
                    message,
                    mailbox=mbx,
                    kind="unparsed",
                    reason=reason,
                    received_at=received_at,
                ),
            )

        if raw is None:
            self.log.warning("mail.body_missing", uid=uid)
            return header_only("the server sent no message body")
        if len(raw) > cap:  # RFC822.SIZE understated it; the bounded read caught it
            return self._too_large(message, len(raw))
        try:
            notification = self.parse(
                raw,
                mailbox=mbx.gmail,
                aliases=mbx.aliases,
                allow_forwarded=mbx.allow_forwarded,
                trusted_receiver=self.settings.trusted_receiver,
            )
        except Exception as exc:
            self.log.error("mail.parser_error", uid=uid, error=type(exc).__name__)
            notification = unparsed(f"parser error: {type(exc).__name__}")
        digest = raw_digest(raw)
        evidence = (digest, raw)
        evidence_ref = self.store.evidence_key(mbx.mailbox_id, digest)

        def outcome_of(n: Notification) -> Outcome:
            return build_outcome(
                n, mailbox=mbx, raw=raw, received_at=received_at, evidence_ref=evidence_ref
            )

        try:
            return outcome_of(notification), evidence
        except Exception as exc:  # e.g. a parser result that no event can hold
            self.log.error("mail.outcome_error", uid=uid, error=type(exc).__name__)
            reason = f"cannot record the parsed mail: {type(exc).__name__}"
            return self._guarded(uid, lambda: outcome_of(unparsed(reason)), evidence)

    def _fence(self) -> tuple[str, str] | None:
        """(lease key, holder) that a cursor write is fenced by; None without a lease."""
        return None if self.lease is None else (self.lease.key, self.lease.owner)

    async def _save_cursor(self, cursor: Cursor) -> None:
        if self.lease is not None:
            self.lease.check()
        if not await self.store.save_cursor(self.mailbox.mailbox_id, cursor, self._fence()):
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

    async def _record(
        self, uid: int, outcome: Outcome, evidence: Evidence | None, cursor: Cursor
    ) -> None:
        """Publish what a candidate became, once (dedup markers), its bytes kept as evidence,
        and move the cursor past it (`cursor`). Redis and NATS failures raise (or retry) here,
        holding the cursor before this mail; a lost lease raises `LeaseLost`.

        A mail starts its credit's trace: the event published here carries it on to the
        matcher and the notifier."""
        with TRACER.start_as_current_span(
            "mail process",
            kind=SpanKind.CONSUMER,
            attributes={"autopay.mailbox_id": self.mailbox.mailbox_id, "imap.uid": uid},
        ):
            await self._record_traced(uid, outcome, evidence, cursor)

    async def _record_traced(
        self, uid: int, outcome: Outcome, evidence: Evidence | None, cursor: Cursor
    ) -> None:
        mbx = self.mailbox
        event = outcome.event
        received_at = (
            event.credit.received_at if isinstance(event, CreditReceived) else event.received_at
        )
        # the seen check and the evidence in one round trip, before anything is published
        if await self.store.already_seen(
            mbx.mailbox_id, outcome.message_key, outcome.fingerprint, keep=evidence
        ):
            metrics.DUPLICATES.inc()
            self.log.info("mail.duplicate", uid=uid, event_id=event.event_id)
            await self._save_cursor(cursor)
            return
        await self._publish(event)
        # the seen markers, the mailbox's health and the cursor in one round trip; a lease
        # lost meanwhile keeps the cursor where it is (the markers are written all the same)
        leased = self._leased()
        passed = await self.store.mark_seen(
            mbx.mailbox_id,
            outcome.message_key,
            outcome.fingerprint,
            mail_at=received_at,
            counters=_health_counters(event),
            cursor=cursor if leased else None,
            lease=self._fence(),
        )
        metrics.MAILBOXES.mail(mbx.mailbox_id, received_at)
        if isinstance(event, CreditReceived):
            metrics.CREDITS.inc()
            self.log.info(
                "credit.received",
                uid=uid,
                credit_id=event.credit.credit_id,
                amount_tiyin=event.credit.amount_tiyin,
                card_last4=event.credit.card_last4,
            )
        else:
            metrics.REJECTED.labels(reason=rejection_label(event)).inc()
            if event.refusal == "too_large":
                metrics.TOO_LARGE.inc()
            self.log.info(
                "credit.rejected",
                uid=uid,
                record_id=event.record_id,
                kind=event.kind,
                refusal=event.refusal,
                reason=event.reason,
            )
        if not (leased and passed):
            raise LeaseLost(mbx.mailbox_id)


def _health_counters(event: CreditReceived | CreditRejected) -> tuple[str, ...]:
    """The mailbox health counters a published mail adds to."""
    if isinstance(event, CreditReceived):
        return ("credits",)
    return ("rejected", "parse_failures") if event.kind == "unparsed" else ("rejected",)


def _raise_if_cancelling() -> None:
    """Surface a cancellation that an inner await swallowed.

    On Python 3.11 `asyncio.wait_for` (used inside redis-py, nats-py and aioimaplib) returns its
    result instead of raising when the cancellation arrives just as the awaited future
    completes; the task then goes on with a pending cancel request and, stopped by its
    supervisor, would enter the next IMAP step and hold its connection for a whole command
    timeout. Every IMAP step checks first."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
