"""`autopay parse-mail` records: one JSON-ready dict per file, in order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autopay_bankmail.model import Notification
from autopay_bankmail.parse import parse_notification

RECORD_KEYS = (
    "file",
    "kind",
    "amount_tiyin",
    "currency",
    "card_last4",
    "occurred_at",
    "format",
    "reason",
)


def notification_record(file: str, note: Notification) -> dict[str, Any]:
    return {
        "file": file,
        "kind": note.kind,
        "amount_tiyin": note.amount_tiyin,
        "currency": note.currency,
        "card_last4": note.card_last4,
        "occurred_at": note.occurred_at.isoformat() if note.occurred_at else None,
        "format": note.format,
        "reason": note.reason,
    }


def parse_mail_records(
    paths: list[Path], mailbox: str | None, allow_forwarded: bool, aliases: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Parse each file; an unreadable file gives an `unparsed` record, never an exception.
    A refusal's `reason` starts with its code (`replayed: ...`, `forged: ...`)."""
    records = []
    for path in paths:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            note = Notification(kind="unparsed", reason=f"cannot read file: {exc.strerror or exc}")
        else:
            note = parse_notification(
                raw, mailbox=mailbox, aliases=aliases, allow_forwarded=allow_forwarded
            )
        records.append(notification_record(str(path), note))
    return records
