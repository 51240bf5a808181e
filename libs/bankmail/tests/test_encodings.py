"""MIME transport variants: the same credit however the mail is encoded."""

from __future__ import annotations

import base64
import html
import quopri

import pytest

from autopay_bankmail import parse_notification


def assert_credit(raw: bytes, **kw) -> None:
    note = parse_notification(raw, **kw)
    assert note.kind == "credit", note.reason
    assert (note.amount_tiyin, note.card_last4, note.currency) == (5003700, "4821", "UZS")


@pytest.mark.parametrize("cte", ["base64", "quoted-printable", "8bit"])
def test_plain_text_in_each_transfer_encoding(kit, cte):
    assert_credit(kit.mail(kit.bank_body(), cte=cte))


def test_quoted_printable_soft_break_inside_the_line(kit):
    qp = quopri.encodestring(kit.bank_body().encode())
    cut = qp.index(b"summa:") + 3
    qp = qp[:cut] + b"=\r\n" + qp[cut:]
    assert_credit(kit.mail(qp, cte="quoted-printable", encoded=True))


@pytest.mark.parametrize("charset", ["windows-1251", "koi8-r", "utf-8"])
def test_russian_block_in_a_legacy_charset(kit, charset):
    assert_credit(kit.mail(kit.bank_body(), charset=charset, cte="base64"))


def test_unknown_charset_falls_back(kit):
    assert_credit(kit.mail(kit.bank_body().encode(), charset="x-unknown-8bit", cte="base64"))


def test_html_only_body(kit):
    paragraphs = "".join(
        f"<p>{html.escape(line).replace(' ', '&nbsp;', 1)}</p>"
        for line in kit.bank_body().split("\n")
    )
    body = f"<html><head><style>p {{color: red}}</style></head><body>{paragraphs}</body></html>"
    assert_credit(kit.mail(body, ctype="text/html", cte="quoted-printable"))


def test_html_with_table_layout_and_entities(kit):
    line = kit.CREDIT_LINE.replace(" ", "&nbsp;").replace("***", "&#42;&#42;&#42;")
    body = f"<table><tr><td>{line}</td></tr>\n<tr><td>Hurmat bilan</td></tr></table>"
    assert_credit(kit.mail(body, ctype="text/html"))


def multipart(kit, parts: list[tuple[str, str, str]], subtype: str = "alternative") -> bytes:
    boundary = "==b=="
    chunks = []
    for ctype, body, disposition in parts:
        chunks.append(
            f"--{boundary}\r\nContent-Type: {ctype}; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: base64\r\n{disposition}\r\n"
            + base64.encodebytes(body.encode()).decode()
        )
    payload = "\r\n".join(chunks) + f"\r\n--{boundary}--\r\n"
    raw = kit.mail("", cte="7bit")
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    head = head.replace(
        'Content-Type: text/plain; charset="utf-8"',
        f'Content-Type: multipart/{subtype}; boundary="{boundary}"',
    )
    return (head + "\r\n\r\n" + payload).encode()


def test_multipart_alternative_prefers_plain(kit):
    html_body = "<p>" + kit.CREDIT_LINE.replace("50037.00", "99999.00") + "</p>"
    raw = multipart(kit, [("text/plain", kit.bank_body(), ""), ("text/html", html_body, "")])
    assert_credit(raw)


def test_multipart_with_empty_plain_uses_html(kit):
    raw = multipart(
        kit, [("text/plain", "  \n", ""), ("text/html", f"<p>{kit.CREDIT_LINE}</p>", "")]
    )
    assert_credit(raw)


def test_attachments_are_not_read(kit):
    other = kit.CREDIT_LINE.replace("50037.00", "77777.00")
    raw = multipart(
        kit,
        [
            ("text/plain", kit.bank_body(), ""),
            ("text/plain", other, 'Content-Disposition: attachment; filename="x.txt"\r\n'),
        ],
        subtype="mixed",
    )
    assert_credit(raw)


def test_rfc2047_subject_and_crlf_or_lf_line_ends(kit):
    raw = kit.mail(kit.bank_body(), subject="=?utf-8?b?VVpDQVJEIElORk8=?=")
    assert_credit(raw)
    assert_credit(raw.replace(b"\r\n", b"\n"))


def test_forwarded_text_encodings(kit):
    for cte in ("8bit", "quoted-printable", "base64"):
        raw = kit.forwarded(
            "🎉 Пополнение➕ 50.037,00 UZS💳 HUMOCARD *4821🕓 10:07 14.03.2026",
            sender="HUMOcardbot",
            cte=cte,
        )
        assert_credit(raw, allow_forwarded=True)
