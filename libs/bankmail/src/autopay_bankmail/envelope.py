"""RFC 822 bytes → `Envelope`: the headers and body text the parsers and the trust policy read.

Built on the stdlib `email` package (`policy.default`), which handles base64, quoted-printable,
multipart/alternative and RFC 2047 headers. Header values are read raw and parsed defensively:
malformed mail gives empty fields, never an exception to the caller of `read_envelope` beyond
what `parse_notification` catches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime

from autopay_bankmail.text import html_to_text, normalize

MAX_PART_CHARS = 200_000
MAX_PARTS = 50

_SMS_SUBJECT = re.compile(r"^(?:(?:fwd?|fw)\s*+:\s*+)*+sms\s++from\s*+:?\s*+(?P<sender>.+)", re.I)
_WRAPPER_FROM = re.compile(r"^from:\s*+(?P<sender>.+)", re.I)
_WRAPPER_MESSAGE = re.compile(r"^message:\s?(?P<first>.*)$", re.I)


@dataclass(frozen=True)
class Envelope:
    """What one message says about itself. Addresses are lowercased addr-specs, read leniently
    (for classifying); the trust policy reads the raw header values itself."""

    from_addresses: tuple[str, ...] = ()
    to_addresses: tuple[str, ...] = ()
    from_headers: tuple[str, ...] = ()
    """Every `From` header value as written (the trust policy reads them strictly)."""
    to_headers: tuple[str, ...] = ()
    subject: str = ""
    message_id: str | None = None
    sent_at: datetime | None = None
    auth_results: tuple[str, ...] = ()
    text: str = ""
    sms_senders: tuple[str, ...] = ()
    sms_text: str | None = None

    @property
    def sender(self) -> str | None:
        return self.from_addresses[0] if len(self.from_addresses) == 1 else None

    @property
    def forwarded(self) -> bool:
        """Looks like an SMS / bot forwarder's mail (subject `SMS from ...` or a `Message:`
        wrapper in the body)."""
        return bool(self.sms_senders) or self.sms_text is not None

    @property
    def body(self) -> str:
        """The notification text proper: the forwarded message if wrapped, else the body."""
        return self.sms_text if self.sms_text is not None else self.text


def read_envelope(raw: bytes) -> Envelope:
    msg = BytesParser(policy=policy.default).parsebytes(bytes(raw))
    headers = [(name.lower(), _unfold(value)) for name, value in msg.raw_items()]

    def values(name: str) -> list[str]:
        return [value for key, value in headers if key == name]

    subject = _decode_words(values("subject")[0]) if values("subject") else ""
    text = normalize(_body_text(msg))
    sms_text, wrapper_sender = _unwrap(text)
    senders: list[str] = []
    if match := _SMS_SUBJECT.match(subject):
        senders.append(match["sender"].strip())
    if wrapper_sender:
        senders.append(wrapper_sender)
    message_ids = values("message-id")
    return Envelope(
        from_addresses=_addresses(values("from")),
        to_addresses=_addresses(values("to")),
        from_headers=tuple(values("from")),
        to_headers=tuple(values("to")),
        subject=subject.strip(),
        message_id=message_ids[0].strip() or None if message_ids else None,
        sent_at=_date(values("date")),
        auth_results=tuple(values("authentication-results")),
        text=text,
        sms_senders=tuple(senders),
        sms_text=sms_text,
    )


def _unfold(value: object) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", str(value)).strip()


def _decode_words(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _addresses(values: list[str]) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        for _name, addr in getaddresses([value]):
            addr = addr.strip().lower()
            if addr:
                found.append(addr)
    return tuple(found)


def _date(values: list[str]) -> datetime | None:
    if not values:
        return None
    try:
        moment = parsedate_to_datetime(values[0])
    except Exception:
        return None
    return moment if moment.tzinfo is not None else None


def _body_text(msg: EmailMessage) -> str:
    plain: list[str] = []
    html: list[str] = []
    for count, part in enumerate(msg.walk()):
        if count >= MAX_PARTS:
            break
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain":
            plain.append(_decode_part(part))
        elif ctype == "text/html":
            html.append(html_to_text(_decode_part(part)))
    chosen = [p for p in plain if p.strip()] or html
    return "\n".join(chosen)


def _decode_part(part: EmailMessage) -> str:
    try:
        content = part.get_content()
        text = content if isinstance(content, str) else ""
    except Exception:
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            return ""
        text = _decode_bytes(payload, part.get_content_charset())
    return text[:MAX_PART_CHARS]


def _decode_bytes(payload: bytes, charset: str | None) -> str:
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return payload.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return payload.decode("utf-8", errors="replace")


def _unwrap(text: str) -> tuple[str | None, str | None]:
    """A forwarder body (`From: X` / `Time: ...` / `Message: text`) → (text, X)."""
    lines = text.split("\n")
    sender = None
    for index, line in enumerate(lines):
        if sender is None and (match := _WRAPPER_FROM.match(line)):
            sender = match["sender"].strip()
            continue
        if match := _WRAPPER_MESSAGE.match(line):
            rest = [match["first"], *lines[index + 1 :]]
            return "\n".join(rest).strip(), sender
    return None, None
