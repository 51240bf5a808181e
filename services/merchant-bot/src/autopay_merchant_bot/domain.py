"""The bot's decisions, as pure functions: when a mailbox's health is worth telling, which
quota level a subscription is at, which orders to offer under an unmatched credit."""

from __future__ import annotations

import re
from dataclasses import dataclass

from autopay_store.merchant_bot import MailboxAlertState, RecentOrder

# --- mailbox health ---------------------------------------------------------------------------

MAILBOX_STATES = {
    "mailbox.connected": "ok",
    "mailbox.up": "ok",
    "mailbox.down": "down",
    "mailbox.auth_failed": "auth_failed",
}


@dataclass(frozen=True)
class MailboxChange:
    state: MailboxAlertState
    alert: str | None
    """The text key to tell now, if any."""
    down_since: bool
    """Whether the mailbox now waits to be told "down" once it lasted."""


def mailbox_change(current: MailboxAlertState | None, event_type: str) -> MailboxChange | None:
    """What a mailbox event changes; None when nothing does.

    A refused password is told at once (`auth_failed`). A lost connection is common (Gmail
    drops sessions, the service reconnects in seconds), so "down" is only told when it lasts
    (`down_lasted`). Coming back is told only after a state that was told."""
    new = MAILBOX_STATES[event_type]
    if current is not None and current.state == new:
        return None
    if new == "auth_failed":
        return MailboxChange(MailboxAlertState("auth_failed", True), "mailbox_auth_failed", False)
    if new == "down":
        if current is not None and current.state == "auth_failed":
            return None  # a refused login is also a lost session; the refusal was told
        return MailboxChange(MailboxAlertState("down", False), None, True)
    told = current is not None and current.alerted
    return MailboxChange(
        MailboxAlertState("ok", False), "mailbox_recovered" if told else None, False
    )


def down_lasted(current: MailboxAlertState | None) -> MailboxChange | None:
    """A mailbox that stayed down past the grace: tell it once."""
    if current is None or current.state != "down" or current.alerted:
        return None
    return MailboxChange(MailboxAlertState("down", True), "mailbox_down", False)


# --- quota ------------------------------------------------------------------------------------


def quota_level(payments_used: int, max_payments: int) -> int:
    """0, 80 or 100: how much of the subscription's payment allowance is used."""
    if max_payments <= 0 or payments_used >= max_payments:
        return 100
    if payments_used * 100 >= 80 * max_payments:
        return 80
    return 0


# --- candidates -------------------------------------------------------------------------------


def candidates(
    orders: list[RecentOrder], amount_tiyin: int, limit: int, named: tuple[str, ...] = ()
) -> list[RecentOrder]:
    """The orders to offer for a credit of `amount_tiyin`: those the matcher named first (an
    ambiguous credit's), then waiting and expired ones, closest in amount, then newest."""
    usable = [o for o in orders if o.status in ("waiting", "expired")]
    first = [o for o in usable if o.order_id in named]
    rest = sorted(
        (o for o in usable if o.order_id not in named),
        key=lambda o: (abs(o.amount_tiyin - amount_tiyin), -o.created_at.timestamp()),
    )
    return (first + rest)[:limit]


# --- input ------------------------------------------------------------------------------------

_GMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,}$")
_APP_PASSWORD = re.compile(r"^(?:[a-zA-Z]{4}\s?){4}$")


def looks_like_address(text: str) -> bool:
    return _GMAIL.match(text.strip()) is not None


def looks_like_app_password(text: str) -> bool:
    """A Gmail App Password as Google shows it: 16 letters, often in groups of four."""
    return _APP_PASSWORD.match(text.strip()) is not None


def som(tiyin: int) -> str:
    """50 037 so'm as the bot writes it: thin groups of three."""
    whole, part = divmod(tiyin, 100)
    text = f"{whole:,}".replace(",", " ")
    return f"{text}.{part:02d}" if part else text
