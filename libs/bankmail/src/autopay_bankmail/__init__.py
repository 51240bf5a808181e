"""Bank notification parsers (Uzcard, Humo, forwarders), trust policy, synthetic mail.

`parse_notification(raw, mailbox=..., allow_forwarded=...)` never raises on any input.

Modules: `envelope` (MIME → headers + text), `formats` (one module per notification format,
in a registry), `trust` (which senders, and which authentication results, a mailbox believes),
`parse` (the pipeline), `report` (`autopay parse-mail` records), `synth` (realistic credits for
dev and sandbox).
"""

from autopay_bankmail.model import Notification, NotificationKind
from autopay_bankmail.parse import parse_notification

__all__ = ["Notification", "NotificationKind", "parse_notification"]
