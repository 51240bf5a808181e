"""Pure mail-ingest logic: IMAP response reading, identities, notification → event, backoff.

No I/O here; the watcher feeds bytes in and publishes what comes out.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import ValidationError

from autopay_bankmail import Notification
from autopay_contracts.events import Credit, CreditReceived, CreditRejected

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
_UID = re.compile(rb"\bUID (\d+)", re.IGNORECASE)
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


def parse_fetch(lines: list[bytes | bytearray]) -> list[FetchedMessage]:
    """Messages of a `UID FETCH ... (UID INTERNALDATE BODY.PEEK[])` response.

    aioimaplib gives the literal body as a `bytearray` line between the `n FETCH (` line and
    the closing line; the UID may sit on either side of the literal.
    """
    messages: list[FetchedMessage] = []
    uid: int | None = None
    raw: bytes | None = None
    internal: datetime | None = None

    def flush() -> None:
        if uid is not None and raw is not None:
            messages.append(FetchedMessage(uid, raw, internal))

    for line in lines:
        if isinstance(line, bytearray):
            raw = bytes(line)
            continue
        if _FETCH_START.match(line):
            flush()
            uid, raw, internal = None, None, None
        if m := _UID.search(line):
            uid = int(m.group(1))
        if m := _INTERNALDATE.search(line):
            internal = _parse_internaldate(m.group(1).decode())
    flush()
    return messages


def _parse_internaldate(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None


def uid_set(uids: list[int]) -> str:
    return ",".join(str(u) for u in uids)


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
    """What one fetched mail becomes."""

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
    rejected = CreditRejected(
        record_id=record_id_for(mailbox.mailbox_id, message_id, raw),
        mailbox_id=mailbox.mailbox_id,
        gmail=mailbox.gmail,
        kind=notification.kind,
        reason=notification.reason or notification.kind,
        format=notification.format,
        message_id=message_id,
        received_at=received_at,
        evidence_ref=evidence_ref,
    )
    return Outcome(rejected, key, None)


def _credit_problem(n: Notification) -> str | None:
    missing = [
        name
        for name in ("amount_tiyin", "currency", "card_last4", "occurred_at")
        if getattr(n, name) is None
    ]
    if missing:
        return "credit without " + ", ".join(missing)
    if n.occurred_at.tzinfo is None:
        return "credit time without a time zone"
    return None


# --- retry pacing ---------------------------------------------------------------------------


def backoff_delay(
    attempt: int, initial: float, cap: float, rng: random.Random | None = None
) -> float:
    """Capped exponential backoff with equal jitter: in [d/2, d], d = min(cap, initial·2^n)."""
    rng = rng or random
    ceiling = min(cap, initial * (2 ** min(attempt, 30)))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)
