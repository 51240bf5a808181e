"""Shared helpers for the bankmail tests: the corpus and a builder of raw test mail."""

from __future__ import annotations

import base64
import json
import quopri
from collections.abc import Callable
from pathlib import Path

import pytest

CORPUS = Path(__file__).parent / "corpus"
BANK = "noreply@info.uzcard.uz"
MAILBOX = "shop.kassa@gmail.com"
BANK_AUTH = (
    "mx.google.com; dkim=pass header.i=@info.uzcard.uz header.s=mail header.b=Ab12Cd34;"
    " spf=pass (google.com: domain of sender designates 203.0.113.7 as permitted sender)"
    " smtp.mailfrom=sender@info.uzcard.uz; dmarc=pass header.from=info.uzcard.uz"
)
MAILBOX_AUTH = (
    "mx.google.com; dkim=pass header.i=@gmail.com header.s=mail header.b=Ab12Cd34;"
    " spf=pass smtp.mailfrom=shop.kassa@gmail.com; dmarc=pass header.from=gmail.com"
)
CREDIT_LINE = (
    "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***4821. "
    "summa:50037.00 UZS balans:1287037.00 UZS"
)

MailBuilder = Callable[..., bytes]


def build_mail(
    body: str | bytes,
    *,
    from_: str | list[str] = f"UZCARD <{BANK}>",
    to: str = MAILBOX,
    subject: str = "UZCARD INFO",
    auth: list[str] | None = None,
    ctype: str = "text/plain",
    charset: str = "utf-8",
    cte: str = "base64",
    extra: list[str] | None = None,
    encoded: bool = False,
) -> bytes:
    """Raw RFC 822 bytes; `auth` is the Authentication-Results values, topmost first.
    `encoded`: `body` is already in the transfer encoding `cte`."""
    data = body if isinstance(body, bytes) else body.encode(charset)
    if encoded:
        payload = data
    elif cte == "base64":
        payload = base64.encodebytes(data)
    elif cte == "quoted-printable":
        payload = quopri.encodestring(data)
    else:
        payload = data
    auth = [BANK_AUTH] if auth is None else auth
    froms = [from_] if isinstance(from_, str) else from_
    lines = [f"Authentication-Results: {a}" for a in auth]
    lines += [f"From: {f}" for f in froms]
    lines += [
        f"To: {to}",
        f"Subject: {subject}",
        "Date: Sat, 14 Mar 2026 10:07:31 +0500",
        "Message-ID: <test.1@example.test>",
        *(extra or []),
        "MIME-Version: 1.0",
        f'Content-Type: {ctype}; charset="{charset}"',
        f"Content-Transfer-Encoding: {cte}",
    ]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + payload


def bank_body(line: str = CREDIT_LINE) -> str:
    return (
        "Hurmatli mijoz!\nSizning kartangizda quyidagi amaliyot bajarildi:\n"
        f"{line}\n\nHurmat bilan, UZCARD texnik yordam xizmati\n\n----\n\n"
        "Уважаемый клиент!\nПо вашей карте была выполнена следующая операция:\n"
        f"{line}\n\nС уважением, служба технической поддержки UZCARD\n"
    )


def forwarded_mail(text: str, sender: str = "UZCARD", *, wrapper: bool = True, **kw) -> bytes:
    body = f"From: {sender}\nTime: 2026-03-14 10:07:22\n\nMessage: {text}\n" if wrapper else text
    kw.setdefault("from_", f'"{sender}" <{MAILBOX}>')
    kw.setdefault("subject", f"SMS from {sender}" if wrapper else f"SMS from: {sender}")
    kw.setdefault("auth", [MAILBOX_AUTH])
    kw.setdefault("cte", "8bit")
    return build_mail(body, **kw)


@pytest.fixture(scope="session")
def expected() -> dict[str, dict]:
    return json.loads((CORPUS / "expected.json").read_text())


@pytest.fixture(scope="session")
def corpus_bytes(expected: dict[str, dict]) -> dict[str, bytes]:
    return {name: (CORPUS / name).read_bytes() for name in expected}


class Kit:
    """Test helpers handed to tests as the `kit` fixture (importlib mode: no sibling imports)."""

    BANK = BANK
    MAILBOX = MAILBOX
    BANK_AUTH = BANK_AUTH
    MAILBOX_AUTH = MAILBOX_AUTH
    CREDIT_LINE = CREDIT_LINE
    CORPUS = CORPUS
    mail = staticmethod(build_mail)
    bank_body = staticmethod(bank_body)
    forwarded = staticmethod(forwarded_mail)


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit
