"""Time as the API shows it: Tashkent wall-clock time (UTC+5, no DST since 1992)."""

from __future__ import annotations

from datetime import UTC, datetime

from autopay_contracts.local_time import TASHKENT


def utcnow() -> datetime:
    return datetime.now(UTC)


def tashkent(at: datetime | None) -> str | None:
    """`"YYYY-MM-DD HH:MM:SS"` in Tashkent time, or None."""
    if at is None:
        return None
    return at.astimezone(TASHKENT).strftime("%Y-%m-%d %H:%M:%S")
