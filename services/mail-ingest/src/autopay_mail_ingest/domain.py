"""Pure mail-ingest logic: IMAP response reading, screening, identities, notification → event,
backoff.

No I/O here; the watcher feeds bytes in and publishes what comes out.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, cast, get_args

from pydantic import ValidationError

from autopay_bankmail import Notification
from autopay_bankmail.screen import MAX_SCREEN_BYTES, SCREEN_FIELDS, is_candidate
from autopay_contracts.events import (
    REFUSALS,
    Credit,
    CreditReceived,
    CreditRejected,
    NotificationKind,
    Refusal,
)

# --- mailbox configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class WatchedMailbox:
    """A mailbox to watch, with its app password already decrypted (never logged)."""

    mailbox_id: str
    gmail: str
    revision: int
    imap_host: str
    imap_port: int
    imap_tls: bool
    username: str
    password: str = field(repr=False)
    aliases: tuple[str, ...] = ()
    """Other addresses the owner declared for this mailbox (a notification may name them)."""
    allow_forwarded: bool = False
    test_mode: bool = False


# --- IMAP responses -------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedMessage:
    uid: int
    raw: bytes = field(repr=False)
    internal_date: datetime | None = None


_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]", re.IGNORECASE)
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]", re.IGNORECASE)
_FETCH_START = re.compile(rb"^\d+ FETCH \(", re.IGNORECASE)
# Bounded digit runs: a server's (or a fuzzer's) 5 000-digit number must not raise in int().
_UID = re.compile(rb"\bUID (\d{1,10})(?!\d)", re.IGNORECASE)
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d{1,15})(?!\d)", re.IGNORECASE)
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"', re.IGNORECASE)


@dataclass(frozen=True)
class SelectedMailbox:
    uidvalidity: int
    uidnext: int | None


def parse_select(lines: list[bytes]) -> SelectedMailbox:
    uidvalidity = uidnext = None
    for line in lines:
        line = bytes(line)
        if m := _UIDVALIDITY.search(line):
            uidvalidity = int(m.group(1))
        if m := _UIDNEXT.search(line):
            uidnext = int(m.group(1))
    if uidvalidity is None:
        raise ValueError("SELECT response without UIDVALIDITY")
    return SelectedMailbox(uidvalidity, uidnext)


def parse_search(lines: list[bytes]) -> list[int]:
    """UIDs of an untagged `SEARCH` response (aioimaplib strips the `* SEARCH` prefix)."""
    uids: set[int] = set()
    for line in lines:
        text = bytes(line).strip()
        if text.upper().startswith(b"SEARCH"):
            text = text[6:].strip()
        if text and all(token.isdigit() for token in text.split()):
            uids.update(int(token) for token in text.split())
    return sorted(uids)


@dataclass
class _FetchItems:
    """The items of one `n FETCH (...)` response that this service asks for."""

    uid: int | None = None
    size: int | None = None
    internal_date: datetime | None = None
    literal: bytes | None = None


def _fetch_responses(lines: list[bytes | bytearray]) -> list[_FetchItems]:
    """The `n FETCH (...)` responses of a reply, in order.

    aioimaplib gives a literal (a body section) as a `bytearray` line between the `n FETCH (`
    line and the closing line, and everything else as `bytes` lines; UID, RFC822.SIZE and
    INTERNALDATE may sit on either side of the literal. Only `bytes` lines are searched for
    items, so nothing inside a message (a literal) is ever read as an item.
    """
    found: list[_FetchItems] = []
    current: _FetchItems | None = None
    for line in lines:
        if isinstance(line, bytearray):
            if current is not None and current.literal is None:
                current.literal = bytes(line)
            continue
        line = bytes(line)
        if _FETCH_START.match(line):
            current = _FetchItems()
            found.append(current)
        if current is None:
            continue
        if m := _UID.search(line):
            current.uid = int(m.group(1))
        if m := _SIZE.search(line):
            current.size = int(m.group(1))
        if m := _INTERNALDATE.search(line):
            current.internal_date = _parse_internaldate(m.group(1).decode("ascii", "replace"))
    return found


def parse_fetch(lines: list[bytes | bytearray]) -> list[FetchedMessage]:
    """Messages of a `UID FETCH ... (UID BODY.PEEK[]...)` response; a response without a UID
    or without a literal is left out (the caller notices the UID it asked for is missing)."""
    return [
        FetchedMessage(items.uid, items.literal, items.internal_date)
        for items in _fetch_responses(lines)
        if items.uid is not None and items.literal is not None
    ]


def _parse_internaldate(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None


def uid_set(uids: list[int]) -> str:
    return ",".join(str(u) for u in uids)


# --- screening by headers -------------------------------------------------------------------


def screen_fetch_items() -> str:
    """FETCH items that screen a new mail without reading it: its size, arrival time and at
    most `MAX_SCREEN_BYTES` of its `SCREEN_FIELDS` headers (a partial fetch, so a sender who
    writes megabytes of `From` still costs kilobytes). `.PEEK` leaves the mail unread."""
    fields = " ".join(SCREEN_FIELDS)
    return (
        f"(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS ({fields})]<0.{MAX_SCREEN_BYTES}>)"
    )


def body_fetch_items(max_bytes: int) -> str:
    """FETCH items that read a screened candidate whole. The partial bound (one byte over the
    cap) keeps the reply within the cap even when the server's RFC822.SIZE understated the
    message: a reply longer than the cap is refused as too large, never parsed."""
    return f"(UID BODY.PEEK[]<0.{max_bytes + 1}>)"


@dataclass(frozen=True)
class ScreenedMessage:
    """What the screening FETCH told about one mail: never its body."""

    uid: int
    size: int | None = None
    internal_date: datetime | None = None
    header: bytes | None = field(default=None, repr=False)
    """The `SCREEN_FIELDS` header lines as the server sent them (None: the reply held none)."""


def parse_screen(lines: list[bytes | bytearray]) -> dict[int, ScreenedMessage]:
    """The screening reply by UID. A server may send one UID in several responses (an
    unsolicited flags update next to the asked-for items): their items are merged."""
    screened: dict[int, ScreenedMessage] = {}
    for items in _fetch_responses(lines):
        if items.uid is None:
            continue
        known = screened.get(items.uid) or ScreenedMessage(items.uid)
        screened[items.uid] = ScreenedMessage(
            items.uid,
            known.size if items.size is None else items.size,
            known.internal_date if items.internal_date is None else items.internal_date,
            known.header if items.literal is None else items.literal,
        )
    return screened


Screening = Literal["old", "unscreened", "personal", "too_large", "candidate"]
"""What to do with a new mail, from its screening:

- `old`: arrived before the read-back window of a resync; passed.
- `unscreened`: the server sent no header fields for it (expunged meanwhile, or a broken
  reply); it cannot be told from personal mail, so it is passed like personal mail.
- `personal`: not from a bank sender (nor, with forwarders, from the mailbox itself); passed
  unread, counted only.
- `too_large`: a candidate over the size cap; recorded from its headers, body never read.
- `candidate`: read whole, parsed, recorded with its bytes as evidence.
"""


def screen(
    message: ScreenedMessage | None,
    *,
    mailbox: WatchedMailbox,
    max_bytes: int,
    cutoff: datetime | None = None,
) -> Screening:
    if message is None:
        return "unscreened"
    arrived = message.internal_date
    if cutoff is not None and arrived is not None and arrived < cutoff:
        return "old"
    if message.header is None:
        return "unscreened"
    try:
        candidate = is_candidate(
            message.header, mailbox=mailbox.gmail, allow_forwarded=mailbox.allow_forwarded
        )
    except Exception:  # screening is lenient and should not raise; if it does, pass the mail
        return "unscreened"
    if not candidate:
        return "personal"
    # Without a size in the reply, the bounded whole fetch (`body_fetch_items`) still caps it.
    if message.size is not None and message.size > max_bytes:
        return "too_large"
    return "candidate"


LoginFailure = Literal["auth", "throttled", "other"]


def classify_login_failure(text: str) -> LoginFailure:
    """`auth`: credentials must be re-entered; `throttled`: back off for minutes."""
    upper = text.upper()
    if "AUTHENTICATIONFAILED" in upper or "APPLICATION-SPECIFIC PASSWORD" in upper:
        return "auth"
    if "INVALID CREDENTIALS" in upper or "AUTHORIZATIONFAILED" in upper:
        return "auth"
    if "THROTTLED" in upper or "TOO MANY SIMULTANEOUS" in upper or "OVERQUOTA" in upper:
        return "throttled"
    return "other"


def fetch_refusal_is_transient(text: str) -> bool:
    """Whether a FETCH refused with `NO` says the server is busy or limiting (retry the same
    mail later) rather than that it cannot send these messages (pass them)."""
    upper = text.upper()
    return any(
        word in upper
        for word in ("THROTTLED", "OVERQUOTA", "UNAVAILABLE", "[LIMIT]", "TOO MANY", "TRY AGAIN")
    )


# --- identities -----------------------------------------------------------------------------


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def raw_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID header, read without parsing the body (the parser may not have found it)."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = re.search(rb"^message-id:[ \t]*(.+(?:\r?\n[ \t].*)*)", head, re.I | re.M)
    if not match:
        return None
    value = re.sub(rb"\s+", b"", match.group(1)).decode("ascii", "replace")
    return value or None


def message_key(message_id: str | None, raw: bytes) -> str:
    """Dedup key of one mail: its Message-ID, else the digest of its bytes."""
    if message_id:
        return "mid:" + _digest(message_id.strip().lower())[:32]
    return "raw:" + raw_digest(raw)[:32]


def credit_id_for(
    mailbox_id: str, fingerprint: str | None, message_id: str | None, raw: bytes
) -> str:
    """Deterministic: the same transaction in the same mailbox always has the same credit id."""
    basis = "fp:" + fingerprint if fingerprint else message_key(message_id, raw)
    return "cr" + _digest(mailbox_id, basis)[:30]


def record_id_for(mailbox_id: str, message_id: str | None, raw: bytes) -> str:
    return "rj" + _digest(mailbox_id, message_key(message_id, raw))[:30]


# --- notification → event -------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one fetched mail becomes.

    `message_key` is its dedup marker. A rejection's marker is kept apart from a credit's
    (`rj:` prefix): anyone can mail a forgery, or a 20 MiB mail, under the Message-ID a genuine
    notification will carry, and its rejection must not make that notification a duplicate.
    """

    event: CreditReceived | CreditRejected
    message_key: str
    fingerprint: str | None

    @property
    def is_credit(self) -> bool:
        return isinstance(self.event, CreditReceived)


def unparsed(reason: str) -> Notification:
    return Notification(kind="unparsed", reason=reason)


def build_outcome(
    notification: Notification,
    *,
    mailbox: WatchedMailbox,
    raw: bytes,
    received_at: datetime,
    evidence_ref: str | None,
) -> Outcome:
    """A trusted, complete credit → `CreditReceived`; anything else → `CreditRejected`."""
    message_id = notification.message_id or header_message_id(raw)
    key = message_key(message_id, raw)
    if notification.kind == "credit":
        fingerprint = notification.fingerprint()
        problem = _credit_problem(notification)
        if problem is None:
            # _credit_problem found none of these missing
            assert notification.card_last4 is not None and notification.currency is not None
            assert notification.amount_tiyin is not None and notification.occurred_at is not None
            try:
                credit = Credit(
                    credit_id=credit_id_for(mailbox.mailbox_id, fingerprint, message_id, raw),
                    mailbox_id=mailbox.mailbox_id,
                    gmail=mailbox.gmail,
                    card_last4=notification.card_last4,
                    amount_tiyin=notification.amount_tiyin,
                    currency=notification.currency,
                    occurred_at=notification.occurred_at,
                    received_at=received_at,
                    balance_tiyin=notification.balance_tiyin,
                    format=notification.format or "unknown",
                    message_id=message_id,
                    evidence_ref=evidence_ref,
                    test_mode=mailbox.test_mode,
                )
            except ValidationError as exc:
                problem = "credit fields invalid: " + "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
                )
            else:
                return Outcome(CreditReceived(credit=credit), key, fingerprint)
        notification = Notification(
            kind="rejected", format=notification.format, reason=problem, message_id=message_id
        )
    refusal = notification.refusal if notification.kind == "rejected" else None
    rejected = CreditRejected(
        record_id=record_id_for(mailbox.mailbox_id, message_id, raw),
        mailbox_id=mailbox.mailbox_id,
        gmail=mailbox.gmail,
        kind=notification.kind,
        reason=notification.reason or notification.kind,
        refusal=cast("Refusal | None", refusal if refusal in REFUSALS else None),
        format=notification.format,
        message_id=message_id,
        received_at=received_at,
        evidence_ref=evidence_ref,
    )
    return Outcome(rejected, "rj:" + key, None)


def header_outcome(
    message: ScreenedMessage,
    *,
    mailbox: WatchedMailbox,
    kind: NotificationKind,
    reason: str,
    received_at: datetime,
    refusal: Refusal | None = None,
) -> Outcome:
    """A `CreditRejected` for a candidate whose bytes are not read or not kept (over the cap,
    or missing from the server's reply): its identity comes from the screened headers, size
    and arrival time, and it carries no evidence."""
    header = message.header or b""
    message_id = header_message_id(header)
    identity = b"\x1f".join(
        [
            header,
            str(message.size).encode(),
            message.internal_date.isoformat().encode() if message.internal_date else b"",
        ]
    )
    rejected = CreditRejected(
        record_id=record_id_for(mailbox.mailbox_id, message_id, identity),
        mailbox_id=mailbox.mailbox_id,
        gmail=mailbox.gmail,
        kind=kind,
        reason=reason,
        refusal=refusal,
        message_id=message_id,
        received_at=received_at,
        evidence_ref=None,
    )
    return Outcome(rejected, "rj:" + message_key(message_id, identity), None)


def too_large_outcome(
    message: ScreenedMessage,
    *,
    mailbox: WatchedMailbox,
    size: int,
    max_bytes: int,
    received_at: datetime,
) -> Outcome:
    """`rejected: too_large`, decided before the body is read (or when the bounded read came
    back longer than the cap)."""
    return header_outcome(
        message,
        mailbox=mailbox,
        kind="rejected",
        refusal="too_large",
        reason=f"message over the size cap ({size} > {max_bytes} bytes); not read whole",
        received_at=received_at,
    )


NOTIFICATION_KINDS: tuple[str, ...] = get_args(NotificationKind)
REJECTION_LABELS: tuple[str, ...] = (*REFUSALS, *NOTIFICATION_KINDS, "other")
"""Every value the rejection metric's `reason` label can take (a fixed set)."""


def rejection_label(event: CreditRejected) -> str:
    """The metric label of a rejection: its refusal code, else its kind, else `other`."""
    if event.refusal in REFUSALS:
        return event.refusal
    if event.kind in NOTIFICATION_KINDS:
        return event.kind
    return "other"


def _credit_problem(n: Notification) -> str | None:
    missing = [
        name
        for name in ("amount_tiyin", "currency", "card_last4", "occurred_at")
        if getattr(n, name) is None
    ]
    if missing:
        return "credit without " + ", ".join(missing)
    if n.occurred_at is not None and n.occurred_at.tzinfo is None:
        return "credit time without a time zone"
    return None


# --- retry pacing ---------------------------------------------------------------------------


def backoff_delay(
    attempt: int, initial: float, cap: float, rng: random.Random | None = None
) -> float:
    """Capped exponential backoff with equal jitter: in [d/2, d], d = min(cap, initial·2^n)."""
    uniform = rng.uniform if rng is not None else random.uniform
    ceiling = min(cap, initial * (2 ** min(attempt, 30)))
    return ceiling / 2 + uniform(0, ceiling / 2)
