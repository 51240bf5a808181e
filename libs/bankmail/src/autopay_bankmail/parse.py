"""Entry point: RFC 822 bytes → `Notification` (INTERFACE FIRST; implemented by the parser work)."""

from __future__ import annotations

from autopay_bankmail.model import Notification

TRUSTED_RECEIVER = "mx.google.com"


def parse_notification(
    raw: bytes,
    *,
    mailbox: str | None = None,
    allow_forwarded: bool = False,
    trusted_receiver: str = TRUSTED_RECEIVER,
) -> Notification:
    """Classify one message. `mailbox` defaults to the message's `To` address. Never raises."""
    raise NotImplementedError
