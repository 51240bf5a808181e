"""Tashkent time, in which banks stamp their notifications and the API shows every time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

TASHKENT = timezone(timedelta(hours=5), "Asia/Tashkent")
"""UTC+5 all year (Uzbekistan has kept no daylight saving time since 1992)."""


def tashkent_minute(at: datetime) -> str:
    """`YYYY-MM-DD HH:MM` in Tashkent: how a person is shown a time."""
    return at.astimezone(TASHKENT).strftime("%Y-%m-%d %H:%M")


def tashkent_iso(at: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS` in Tashkent, with no offset: how a webhook shows a time."""
    return at.astimezone(TASHKENT).strftime("%Y-%m-%dT%H:%M:%S")
