"""`autopay dev send-credit`: a realistic bank notification appended to the demo mailbox."""

from __future__ import annotations

from datetime import datetime

import aioimaplib

from autopay_bankmail.synth import credit_notification
from autopay_contracts.local_time import TASHKENT


async def append_credit(
    imap: dict, *, amount_som: int, card_last4: str, to: str, fmt: str = "uzcard-email"
) -> bytes:
    raw = credit_notification(
        fmt,
        to=to,
        amount_tiyin=amount_som * 100,
        card_last4=card_last4,
        occurred_at=datetime.now(TASHKENT),
    )
    await append(imap, raw)
    return raw


async def logged_in(imap: dict, command_timeout_s: float = 10) -> aioimaplib.IMAP4:
    """A connection to `imap` (host, port, tls, user, password), logged in; the caller logs
    out."""
    cls = aioimaplib.IMAP4_SSL if imap.get("tls") else aioimaplib.IMAP4
    client = cls(host=imap["host"], port=imap["port"], timeout=command_timeout_s)
    await client.wait_hello_from_server()
    try:
        response = await client.login(imap["user"], imap["password"])
        if response.result != "OK":
            raise RuntimeError(f"IMAP login refused for {imap['user']}")
    except BaseException:
        await client.logout()
        raise
    return client


async def append(imap: dict, raw: bytes, mailbox: str = "INBOX") -> None:
    client = await logged_in(imap)
    try:
        response = await client.append(raw, mailbox=mailbox)
        if response.result != "OK":
            raise RuntimeError(f"IMAP APPEND refused: {response.lines!r}")
    finally:
        await client.logout()
