"""Trust policy (SPEC §4): sender address, receiver-written Authentication-Results, forwarders."""

from __future__ import annotations

import pytest

from autopay_bankmail import parse_notification
from autopay_bankmail.trust import normalize_mailbox, parse_authentication_results

FAIL_AUTH = (
    "mx.google.com; dkim=fail header.i=@info.uzcard.uz; spf=fail "
    "smtp.mailfrom=sender@info.uzcard.uz"
)


def credit_kind(raw: bytes, **kw) -> tuple[str, str | None]:
    note = parse_notification(raw, **kw)
    return note.kind, note.reason


def test_a_trusted_bank_mail_is_a_credit(kit):
    raw = kit.mail(kit.bank_body())
    note = parse_notification(raw)
    assert (note.kind, note.amount_tiyin, note.card_last4) == ("credit", 5003700, "4821")


def test_lower_sender_written_header_proves_nothing(kit):
    raw = kit.mail(kit.bank_body(), auth=[FAIL_AUTH, kit.BANK_AUTH])
    kind, reason = credit_kind(raw)
    assert kind == "rejected"
    assert "no dkim=pass or spf=pass" in reason


def test_topmost_header_by_another_server_is_refused(kit):
    forged = kit.BANK_AUTH.replace("mx.google.com", "mx.attacker.example")
    raw = kit.mail(kit.bank_body(), auth=[forged, kit.BANK_AUTH])
    kind, reason = credit_kind(raw)
    assert kind == "rejected"
    assert "mx.attacker.example" in reason


def test_missing_header_is_refused(kit):
    assert credit_kind(kit.mail(kit.bank_body(), auth=[]))[0] == "rejected"


@pytest.mark.parametrize(
    "auth",
    [
        "mx.google.com; dkim=fail header.i=@info.uzcard.uz (dkim=pass header.i=@info.uzcard.uz)",
        "mx.google.com; dkim=pass header.i=@attacker.example; spf=pass "
        "smtp.mailfrom=x@attacker.example",
        "mx.google.com; dkim=pass header.d=attacker.example header.i=@info.uzcard.uz",
        "mx.google.com; dkim=pass header.i=@info.uzcard.uz.attacker.example",
        "mx.google.com; spf=pass smtp.mailfrom=x@notuzcard.uz",
        "mx.google.com; dkim=neutral header.i=@info.uzcard.uz; spf=softfail "
        "smtp.mailfrom=sender@info.uzcard.uz",
        "mx.google.com; dmarc=pass header.from=info.uzcard.uz",
        "mx.google.com; none",
        "mx.google.com",
        "",
        "; dkim=pass header.i=@info.uzcard.uz",
        "mx.google.com.attacker.example; dkim=pass header.i=@info.uzcard.uz",
    ],
)
def test_no_pass_for_the_bank_domain_is_refused(kit, auth):
    assert credit_kind(kit.mail(kit.bank_body(), auth=[auth]))[0] == "rejected"


@pytest.mark.parametrize(
    "auth",
    [
        "mx.google.com; spf=pass (google.com: domain of sender designates 203.0.113.7 as "
        "permitted sender) smtp.mailfrom=sender@info.uzcard.uz; dkim=fail header.i=@info.uzcard.uz",
        "mx.google.com; dkim=pass header.i=@info.uzcard.uz; spf=fail smtp.mailfrom=x@y.z",
        "MX.Google.COM; DKIM=Pass header.d=uzcard.uz",
        "mx.google.com 1; dkim = pass header.i=@info.uzcard.uz",
        'mx.google.com; spf=pass smtp.mailfrom="bounce@info.uzcard.uz"',
    ],
)
def test_dkim_or_spf_pass_for_the_bank_domain_is_enough(kit, auth):
    kind, reason = credit_kind(kit.mail(kit.bank_body(), auth=[auth]))
    assert kind == "credit", reason


def test_custom_trusted_receiver(kit):
    auth = kit.BANK_AUTH.replace("mx.google.com", "mx.yandex.ru")
    raw = kit.mail(kit.bank_body(), auth=[auth])
    assert credit_kind(raw)[0] == "rejected"
    assert credit_kind(raw, trusted_receiver="mx.yandex.ru")[0] == "credit"


@pytest.mark.parametrize(
    "from_",
    [
        "UZCARD <noreply@info-uzcard.example>",
        "UZCARD <attacker@info.uzcard.uz>",
        '"noreply@info.uzcard.uz" <attacker@evil.example>',
        "UZCARD <noreply@info.uzcard.uz.evil.example>",
        "noreply@info.uzcard.uz, attacker@evil.example",
        ["UZCARD <noreply@info.uzcard.uz>", "UZCARD <noreply@info.uzcard.uz>"],
        ["UZCARD <noreply@info.uzcard.uz>", "attacker@evil.example"],
        "",
    ],
)
def test_wrong_from_is_refused(kit, from_):
    kind, reason = credit_kind(kit.mail(kit.bank_body(), from_=from_))
    assert kind == "rejected", reason


def test_bare_and_named_bank_address_are_accepted(kit):
    for from_ in ("noreply@info.uzcard.uz", "UZCARD <NoReply@Info.Uzcard.uz>"):
        assert credit_kind(kit.mail(kit.bank_body(), from_=from_))[0] == "credit"


def test_manually_forwarded_bank_mail_is_refused(kit):
    raw = kit.mail(
        "---------- Forwarded message ---------\n" + kit.bank_body(),
        from_=f"Me <{kit.MAILBOX}>",
        subject="Fwd: UZCARD INFO",
        auth=[kit.MAILBOX_AUTH],
    )
    assert credit_kind(raw, allow_forwarded=True)[0] == "rejected"


# --- forwarded texts ----------------------------------------------------------------------


def test_forwarded_sms_from_the_mailbox_is_a_credit(kit):
    raw = kit.forwarded(kit.CREDIT_LINE)
    assert credit_kind(raw, allow_forwarded=True)[0] == "credit"
    assert credit_kind(raw, mailbox=kit.MAILBOX, allow_forwarded=True)[0] == "credit"


def test_forwarders_are_off_by_default(kit):
    kind, reason = credit_kind(kit.forwarded(kit.CREDIT_LINE))
    assert kind == "rejected"
    assert "not enabled" in reason


@pytest.mark.parametrize(
    "from_",
    [
        '"UZCARD" <stranger@gmail.com>',
        '"UZCARD" <shop.kassa@gmail.com.evil.example>',
        f'"UZCARD" <{"noreply@info.uzcard.uz"}>',
    ],
)
def test_forwarded_from_another_address_is_refused(kit, from_):
    raw = kit.forwarded(kit.CREDIT_LINE, from_=from_)
    kind, reason = credit_kind(raw, mailbox=kit.MAILBOX, allow_forwarded=True)
    assert kind == "rejected", reason


def test_forwarded_needs_a_passing_verdict_for_the_mailbox_domain(kit):
    for auth in (
        [],
        ["mx.google.com; dkim=fail header.i=@gmail.com; spf=fail smtp.mailfrom=a@gmail.com"],
        ["mx.google.com; dkim=pass header.i=@evil.example"],
        ["mx.evil.example; dkim=pass header.i=@gmail.com", kit.MAILBOX_AUTH],
    ):
        raw = kit.forwarded(kit.CREDIT_LINE, auth=auth)
        assert credit_kind(raw, mailbox=kit.MAILBOX, allow_forwarded=True)[0] == "rejected"


def test_forwarded_sms_must_come_from_the_bank_sender_id(kit):
    raw = kit.forwarded(kit.CREDIT_LINE, sender="+998901234567")
    kind, reason = credit_kind(raw, mailbox=kit.MAILBOX, allow_forwarded=True)
    assert kind == "rejected"
    assert "+998901234567" in reason
    mixed = kit.forwarded(kit.CREDIT_LINE, subject="SMS from +998901234567")
    assert credit_kind(mixed, mailbox=kit.MAILBOX, allow_forwarded=True)[0] == "rejected"
    unnamed = kit.forwarded(kit.CREDIT_LINE, wrapper=False, subject="Notification")
    assert credit_kind(unnamed, mailbox=kit.MAILBOX, allow_forwarded=True)[0] == "rejected"


def test_gmail_address_variants_are_the_same_mailbox(kit):
    raw = kit.forwarded(kit.CREDIT_LINE, from_='"UZCARD" <ShopKassa@googlemail.com>')
    assert credit_kind(raw, mailbox="shop.kassa+bank@gmail.com", allow_forwarded=True)[0] == (
        "credit"
    )
    assert normalize_mailbox("Shop.Kassa+x@GoogleMail.com") == "shopkassa@gmail.com"
    assert normalize_mailbox("shop.kassa@example.uz") == "shop.kassa@example.uz"


def test_unrelated_mail_is_ignored_not_rejected(kit):
    raw = kit.mail("Hi, lunch tomorrow?", from_="friend@example.com", subject="Lunch")
    note = parse_notification(raw)
    assert (note.kind, note.format) == ("ignored", None)
    code = kit.mail("Your code is 123456", from_="noreply@shop.example", subject="Code")
    assert parse_notification(code).kind == "ignored"


# --- the header parser --------------------------------------------------------------------


def test_parse_authentication_results():
    parsed = parse_authentication_results(
        'mx.google.com; dkim=pass (good (nested) sig) header.i=@info.uzcard.uz header.s="m;x";'
        " spf=softfail smtp.mailfrom=a@b.c; dmarc=pass header.from=info.uzcard.uz"
    )
    assert parsed is not None
    assert parsed.authserv_id == "mx.google.com"
    assert [(r.method, r.result) for r in parsed.results] == [
        ("dkim", "pass"),
        ("spf", "softfail"),
        ("dmarc", "pass"),
    ]
    assert parsed.results[0].props["header.i"] == "@info.uzcard.uz"
    assert parsed.results[0].props["header.s"] == "m;x"
    assert parse_authentication_results("   ") is None
