"""Synthetic bank notifications, realistic enough to pass the real parser and trust policy.

Used by `autopay dev send-credit` and the sandbox. Every builder returns RFC 822 bytes that
`parse_notification` classifies as a trusted credit with exactly the given amount, card and
bank time (minute precision, Tashkent). Forwarded formats come From the mailbox itself, as a
forwarder app sends them, and need `allow_forwarded=True` on the reading side.
The `Date` header is `sent_at`, by default the transaction time itself.
"""

from __future__ import annotations

import base64
import random
import secrets
from collections.abc import Callable
from datetime import datetime
from email.utils import format_datetime

from autopay_contracts.local_time import TASHKENT

BANK_ADDRESS = "noreply@info.uzcard.uz"
RECEIVER = "mx.google.com"


def _aware(moment: datetime) -> datetime:
    """A naive value is taken as Tashkent time."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=TASHKENT)


def _bank_time(occurred_at: datetime) -> datetime:
    """Tashkent time at minute precision."""
    return _aware(occurred_at).astimezone(TASHKENT).replace(second=0, microsecond=0)


def _check(amount_tiyin: int, card_last4: str) -> None:
    if not isinstance(amount_tiyin, int) or amount_tiyin <= 0:
        raise ValueError("amount_tiyin must be a positive integer")
    if len(card_last4) != 4 or not card_last4.isdigit():
        raise ValueError("card_last4 must be 4 digits")


def _balance(amount_tiyin: int, balance_tiyin: int | None) -> int:
    if balance_tiyin is not None:
        return balance_tiyin
    return amount_tiyin + random.randrange(0, 2_000_000_00)


def _plain(tiyin: int) -> str:
    return f"{tiyin // 100}.{tiyin % 100:02d}"


def _grouped(tiyin: int, sep: str, decimal: str) -> str:
    return f"{tiyin // 100:,}".replace(",", sep) + f"{decimal}{tiyin % 100:02d}"


def _message_id(domain: str) -> str:
    return f"<{secrets.randbelow(10**12)}.{secrets.token_hex(8)}@{domain}>"


def _auth_results(domain: str) -> str:
    return (
        f"Authentication-Results: {RECEIVER}; dkim=pass header.i=@{domain}\r\n"
        f" header.s=mail header.b={secrets.token_urlsafe(6)}; spf=pass (google.com:"
        f" domain of sender\r\n designates 203.0.113.7 as permitted sender)\r\n"
        f" smtp.mailfrom=bounce@{domain}; dmarc=pass (p=NONE sp=NONE dis=NONE)\r\n"
        f" header.from={domain}\r\n"
    )


def _message(
    *,
    auth_domain: str,
    from_: str,
    to: str,
    subject: str,
    body: str,
    message_id: str | None,
    sent_at: datetime | None,
    base64_body: bool,
) -> bytes:
    sent = _aware(sent_at or datetime.now(TASHKENT)).astimezone(TASHKENT)
    if base64_body:
        encoded = base64.encodebytes(body.encode()).decode().replace("\n", "\r\n")
        cte = "base64"
    else:
        encoded = body.replace("\n", "\r\n")
        cte = "8bit"
    head = (
        _auth_results(auth_domain)
        + f"From: {from_}\r\n"
        + f"To: {to}\r\n"
        + f"Subject: {subject}\r\n"
        + f"Date: {format_datetime(sent)}\r\n"
        + f"Message-ID: {message_id or _message_id(auth_domain)}\r\n"
        + 'Content-Type: text/plain; charset="utf-8"\r\n'
        + f"Content-Transfer-Encoding: {cte}\r\n"
        + "MIME-Version: 1.0\r\n\r\n"
    )
    return head.encode("ascii") + encoded.encode("utf-8")


def uzcard_line(
    *,
    label: str,
    counterparty: str,
    occurred_at: datetime,
    card_last4: str,
    amount_tiyin: int,
    balance_tiyin: int | None,
    currency: str = "UZS",
) -> str:
    when = _bank_time(occurred_at).strftime("%d.%m.%y %H:%M")
    line = (
        f"{label}: {counterparty}, UZ,{when},karta ***{card_last4}. "
        f"summa:{_plain(amount_tiyin)} {currency}"
    )
    if balance_tiyin is not None:
        line += f" balans:{_plain(balance_tiyin)} {currency}"
    return line


def uzcard_credit_email(
    *,
    to: str,
    amount_tiyin: int,
    card_last4: str,
    occurred_at: datetime,
    balance_tiyin: int | None = None,
    counterparty: str = "CLICK P2P",
    message_id: str | None = None,
    sent_at: datetime | None = None,
) -> bytes:
    """An `uzcard-email` credit (`Perevod na kartu`) from `noreply@info.uzcard.uz` with a
    passing `mx.google.com` Authentication-Results header, addressed to `to`.

    `counterparty` must name a P2P source (contain `P2P`), else the label is ambiguous and the
    parser rightly refuses it. `balance_tiyin` defaults to a random plausible balance.
    """
    _check(amount_tiyin, card_last4)
    if "P2P" not in counterparty.upper().split():
        raise ValueError("counterparty must contain the token P2P")
    line = uzcard_line(
        label="Perevod na kartu",
        counterparty=counterparty,
        occurred_at=occurred_at,
        card_last4=card_last4,
        amount_tiyin=amount_tiyin,
        balance_tiyin=_balance(amount_tiyin, balance_tiyin),
    )
    body = (
        "Hurmatli mijoz!\n"
        "Sizning kartangizda quyidagi amaliyot bajarildi:\n"
        f"{line}\n\n"
        "Hurmat bilan, UZCARD texnik yordam xizmati\n\n"
        "----\n\n"
        "Уважаемый клиент!\n"
        "По вашей карте была выполнена следующая операция:\n"
        f"{line}\n\n"
        "С уважением, служба технической поддержки UZCARD\n"
    )
    return _message(
        auth_domain="info.uzcard.uz",
        from_=f"UZCARD <{BANK_ADDRESS}>",
        to=to,
        subject="UZCARD INFO",
        body=body,
        message_id=message_id,
        sent_at=sent_at or occurred_at,
        base64_body=True,
    )


def _forwarded(
    *,
    mailbox: str,
    sms_sender: str,
    text: str,
    message_id: str | None,
    sent_at: datetime | None,
) -> bytes:
    sent = _aware(sent_at or datetime.now(TASHKENT)).astimezone(TASHKENT)
    body = f"From: {sms_sender}\nTime: {sent:%Y-%m-%d %H:%M:%S}\n\nMessage: {text}\n"
    return _message(
        auth_domain=mailbox.rpartition("@")[2],
        from_=f'"{sms_sender}" <{mailbox}>',
        to=mailbox,
        subject=f"SMS from {sms_sender}",
        body=body,
        message_id=message_id,
        sent_at=sent,
        base64_body=False,
    )


def uzcard_credit_sms(
    *,
    to: str,
    amount_tiyin: int,
    card_last4: str,
    occurred_at: datetime,
    balance_tiyin: int | None = None,
    counterparty: str = "CLICK P2P",
    message_id: str | None = None,
    sent_at: datetime | None = None,
) -> bytes:
    """A forwarded `uzcard-sms` credit, From the mailbox `to` itself."""
    _check(amount_tiyin, card_last4)
    text = uzcard_line(
        label="Perevod na kartu",
        counterparty=counterparty,
        occurred_at=occurred_at,
        card_last4=card_last4,
        amount_tiyin=amount_tiyin,
        balance_tiyin=_balance(amount_tiyin, balance_tiyin),
    )
    return _forwarded(
        mailbox=to,
        sms_sender="UZCARD",
        text=text,
        message_id=message_id,
        sent_at=sent_at or occurred_at,
    )


def humo_bot_credit(
    *,
    to: str,
    amount_tiyin: int,
    card_last4: str,
    occurred_at: datetime,
    balance_tiyin: int | None = None,
    counterparty: str = "DEMO BANK HUMO P2P>T",
    message_id: str | None = None,
    sent_at: datetime | None = None,
) -> bytes:
    """A forwarded `humo-bot` push (`🎉 Пополнение ➕ ...`), From the mailbox `to` itself."""
    _check(amount_tiyin, card_last4)
    balance = _balance(amount_tiyin, balance_tiyin)
    text = (
        "🎉 Пополнение\n"
        f"➕ {_grouped(amount_tiyin, '.', ',')} UZS\n"
        f"📍 {counterparty[:20]}\n"
        f"💳 HUMOCARD *{card_last4}\n"
        f"🕓 {_bank_time(occurred_at):%H:%M %d.%m.%Y}\n"
        f"💰 {_grouped(balance, '.', ',')} UZS"
    )
    return _forwarded(
        mailbox=to,
        sms_sender="HUMOcardbot",
        text=text,
        message_id=message_id,
        sent_at=sent_at or occurred_at,
    )


def cardxabar_credit(
    *,
    to: str,
    amount_tiyin: int,
    card_last4: str,
    occurred_at: datetime,
    balance_tiyin: int | None = None,
    counterparty: str = "UZCARD P2P, UZ",
    message_id: str | None = None,
    sent_at: datetime | None = None,
) -> bytes:
    """A forwarded `cardxabar` push (`🟢 Kartaga o'tkazma ➕ ...`), From the mailbox itself."""
    _check(amount_tiyin, card_last4)
    balance = _balance(amount_tiyin, balance_tiyin)
    text = (
        "🟢 Kartaga o'tkazma\n"
        f"➕ {_grouped(amount_tiyin, ' ', '.')} UZS\n"
        f"💳 ***{card_last4}\n"
        f"📍 {counterparty}\n"
        f"🕓 {_bank_time(occurred_at):%d.%m.%y %H:%M}\n"
        f"💵 {_grouped(balance, ' ', '.')} UZS"
    )
    return _forwarded(
        mailbox=to,
        sms_sender="CardXabar",
        text=text,
        message_id=message_id,
        sent_at=sent_at or occurred_at,
    )


def humo_sms_credit(
    *,
    to: str,
    amount_tiyin: int,
    card_last4: str,
    occurred_at: datetime,
    balance_tiyin: int | None = None,
    counterparty: str = "EXAMPLE P2P>TASHKENT",
    message_id: str | None = None,
    sent_at: datetime | None = None,
) -> bytes:
    """A forwarded `humo-sms` credit (`HUMOCARD *NNNN: popolnenie ...`), From the mailbox."""
    _check(amount_tiyin, card_last4)
    balance = _balance(amount_tiyin, balance_tiyin)
    text = (
        f"HUMOCARD *{card_last4}: popolnenie {_plain(amount_tiyin)} UZS; {counterparty}; "
        f"{_bank_time(occurred_at):%y-%m-%d %H:%M}; Dostupno: {_plain(balance)} UZS"
    )
    return _forwarded(
        mailbox=to,
        sms_sender="HUMO",
        text=text,
        message_id=message_id,
        sent_at=sent_at or occurred_at,
    )


BUILDERS: dict[str, Callable[..., bytes]] = {
    "uzcard-email": uzcard_credit_email,
    "uzcard-sms": uzcard_credit_sms,
    "humo-bot": humo_bot_credit,
    "cardxabar": cardxabar_credit,
    "humo-sms": humo_sms_credit,
}
"""Format name → credit builder (all take the same keyword arguments)."""

FORWARDED_FORMATS = frozenset({"uzcard-sms", "humo-bot", "cardxabar", "humo-sms"})


def credit_notification(format: str = "uzcard-email", **kwargs: object) -> bytes:
    """Build a credit in the named format; see `BUILDERS`. Unknown format → ValueError."""
    try:
        builder = BUILDERS[format]
    except KeyError:
        raise ValueError(f"unknown format {format!r}; known: {', '.join(BUILDERS)}") from None
    return builder(**kwargs)
