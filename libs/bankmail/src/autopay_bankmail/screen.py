"""Screening by headers alone: may this message be a bank notification for this mailbox?

The watcher fetches only `SCREEN_FIELDS` (and the message size) for every new mail, and the
whole message only for candidates: a bank sender's address in `From`, or, when the mailbox
accepts forwarded texts, the mailbox's own address. Everything else is personal mail, which is
never fetched, stored or published. Screening is deliberately inclusive (any `From` address,
however the header is written): the trust policy then judges each candidate in full.
"""

from __future__ import annotations

import contextlib
from email import policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from autopay_contracts import normalize_gmail

SCREEN_FIELDS: tuple[str, ...] = ("From", "Message-ID")
"""The header fields fetched before deciding whether to read a message."""

MAX_SCREEN_BYTES = 8192
"""At most this much of those fields is fetched (a partial fetch), whatever the sender wrote."""


def bank_sender_addresses() -> frozenset[str]:
    from autopay_bankmail.trust import BANK_SENDERS

    return frozenset(BANK_SENDERS)


def from_addresses(header_block: bytes) -> tuple[str, ...]:
    """Every address any `From` header names, lowercased (lenient; never raises)."""
    try:
        msg = BytesHeaderParser(policy=policy.compat32).parsebytes(bytes(header_block))
        values = [str(v) for v in msg.get_all("from") or []]
    except Exception:
        return ()
    found: list[str] = []
    for value in values:
        with contextlib.suppress(Exception):
            found.extend(a.strip().lower() for _, a in getaddresses([value]) if a.strip())
    return tuple(found)


def is_candidate(header_block: bytes, *, mailbox: str, allow_forwarded: bool) -> bool:
    """Whether a message whose header fields are `header_block` may be a bank notification
    (from a bank sender) or a forwarded text (from the mailbox itself, when enabled)."""
    banks = bank_sender_addresses()
    own = normalize_gmail(mailbox) if mailbox else None
    for address in from_addresses(header_block):
        if address in banks:
            return True
        if allow_forwarded and own is not None and normalize_gmail(address) == own:
            return True
    return False
