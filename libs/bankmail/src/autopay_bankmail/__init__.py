"""Bank notification parsers (Uzcard, Humo, forwarders), trust policy, synthetic mail.

`parse_notification(raw, mailbox=..., allow_forwarded=...)` never raises on any input.
"""

from autopay_bankmail.model import Notification, NotificationKind
from autopay_bankmail.parse import parse_notification

__all__ = ["Notification", "NotificationKind", "parse_notification"]
