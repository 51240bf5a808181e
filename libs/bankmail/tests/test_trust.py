"""The trust policy against every attack class (survives: anyone mailing the merchant's Gmail
with any headers and envelope sender; a genuine bank notification for the attacker's own card
re-sent to the merchant; a spoofed forwarder), and genuine mail in the shapes it really takes."""

from __future__ import annotations

from datetime import datetime

import pytest

from autopay_bankmail import parse_notification
from autopay_bankmail.screen import is_candidate
from autopay_contracts import REFUSALS
from autopay_contracts.local_time import TASHKENT
from autopay_testing.hostile_mail import MailCase, genuine_cases, hostile_cases

MAILBOX = "shop.kassa@gmail.com"
WHEN = datetime(2026, 5, 16, 9, 1, tzinfo=TASHKENT)
HOSTILE = hostile_cases(MAILBOX, "6412", 5_003_700, WHEN)
GENUINE = genuine_cases(MAILBOX, "6412", 5_003_700, WHEN)


def read(case: MailCase, **kw):
    kw.setdefault("mailbox", MAILBOX)
    kw.setdefault("aliases", case.aliases)
    kw.setdefault("allow_forwarded", case.allow_forwarded)
    return parse_notification(case.raw, **kw)


def head(raw: bytes) -> bytes:
    return raw.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"


@pytest.mark.parametrize("case", HOSTILE, ids=lambda c: c.name)
def test_every_attack_is_refused_with_its_own_reason(case: MailCase):
    note = read(case)
    assert note.kind == "rejected", note
    assert note.refusal == case.refusal, note.reason
    assert note.reason.startswith(f"{case.refusal}: ")
    assert is_candidate(head(case.raw), mailbox=MAILBOX, allow_forwarded=case.allow_forwarded) is (
        case.candidate
    )


@pytest.mark.parametrize("case", GENUINE, ids=lambda c: c.name)
def test_genuine_mail_still_pays(case: MailCase):
    note = read(case)
    assert note.kind == "credit", note.reason
    assert (note.amount_tiyin, note.card_last4) == (5_003_700, "6412")
    assert is_candidate(head(case.raw), mailbox=MAILBOX, allow_forwarded=case.allow_forwarded)


def test_every_attack_class_of_the_threat_model_is_covered():
    classes = {case.attack for case in HOSTILE}
    assert classes >= {
        "bank domain in a quoted local part",
        "comment injection through the envelope sender",
        "SPF without DKIM",
        "dmarc=fail",
        "misaligned DKIM domain",
        "suffix lookalike domain",
        "prefix lookalike domain",
        "lookalike authserv-id",
        "display-name From spoof",
        "double From",
        "a genuine notification replayed to another mailbox",
        "a spoofed forwarder",
    }
    assert {case.refusal for case in HOSTILE} <= set(REFUSALS)


def test_an_alias_counts_only_when_declared():
    case = next(c for c in GENUINE if c.name == "declared-alias")
    assert read(case, aliases=()).refusal == "replayed"
    assert read(case, aliases=("Cashier@Shop.example",)).kind == "credit"


def test_the_mailbox_is_compared_in_its_normalized_form():
    case = next(c for c in GENUINE if c.name == "genuine")
    for spelling in (
        "Shop.Kassa@gmail.com",
        "shopkassa+x@googlemail.com",
        "s.h.o.p.kassa@gmail.com",
    ):
        assert read(case, mailbox=spelling).kind == "credit"
    assert read(case, mailbox="shop.kassa@example.uz").refusal == "replayed"


def test_custom_trusted_receiver():
    case = next(c for c in GENUINE if c.name == "genuine")
    moved = case.raw.replace(
        b"Authentication-Results: mx.google.com;", b"Authentication-Results: mx.yandex.ru;"
    )
    assert parse_notification(moved, mailbox=MAILBOX).refusal == "untrusted_receiver"
    assert parse_notification(moved, mailbox=MAILBOX, trusted_receiver="mx.yandex.ru").kind == (
        "credit"
    )


# --- single rules, on hand-built mail -----------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "refusal"),
    [
        ("mx.google.com; dkim=fail header.i=@info.uzcard.uz (dkim=pass)", "forged"),
        ("mx.google.com; dkim=neutral header.i=@info.uzcard.uz; spf=softfail", "forged"),
        ("mx.google.com; dmarc=pass header.from=info.uzcard.uz", "forged"),
        ("mx.google.com; none", "forged"),
        ("mx.google.com; spf=pass smtp.mailfrom=sender@info.uzcard.uz", "spf_only"),
        ('mx.google.com; spf=pass smtp.mailfrom="bounce@info.uzcard.uz"', "spf_only"),
        (
            "mx.google.com; dkim=pass header.d=attacker.example header.i=@info.uzcard.uz",
            "misaligned",
        ),
        ("mx.google.com; dkim=pass header.d=info.uzcard.uz header.d=evil.example", "misaligned"),
        ("mx.google.com; dkim=pass header.d=uz", "misaligned"),
        ("mx.google.com; dkim=pass header.i=info.uzcard.uz", "misaligned"),
        ("mx.google.com; dkim=pass header.d=info.uzcard.uz; dmarc=fail", "dmarc_fail"),
        ("mx.google.com; dkim=pass header.d=info.uzcard.uz; dmarc=none", "dmarc_fail"),
        (
            "mx.google.com; dkim=pass header.d=info.uzcard.uz; dmarc=pass header.from=evil.example",
            "dmarc_fail",
        ),
        ("mx.google.com", "malformed_auth"),
        ("", "malformed_auth"),
        ("; dkim=pass header.i=@info.uzcard.uz", "malformed_auth"),
        (
            "mx.google.com.attacker.example; dkim=pass header.i=@info.uzcard.uz",
            "untrusted_receiver",
        ),
        ('"mx.google.co"; dkim=pass header.i=@info.uzcard.uz', "untrusted_receiver"),
    ],
)
def test_receiver_verdicts_that_refuse(kit, auth, refusal):
    note = parse_notification(kit.mail(kit.bank_body(), auth=[auth]), mailbox=kit.MAILBOX)
    assert (note.kind, note.refusal) == ("rejected", refusal), note.reason


@pytest.mark.parametrize(
    "auth",
    [
        "mx.google.com; dkim=pass header.i=@info.uzcard.uz; spf=fail smtp.mailfrom=x@y.z",
        "MX.Google.COM; DKIM=Pass header.d=uzcard.uz",
        "mx.google.com 1; dkim = pass header.i=@info.uzcard.uz",
        "mx.google.com; dkim=pass header.d=uzcard.uz header.i=noreply@info.uzcard.uz",
        "mx.google.com; dkim=fail header.d=evil.example; dkim=pass header.d=info.uzcard.uz",
        "mx.google.com; dkim=pass header.d=info.uzcard.uz; dmarc=pass header.from=info.uzcard.uz",
    ],
)
def test_receiver_verdicts_that_pass(kit, auth):
    note = parse_notification(kit.mail(kit.bank_body(), auth=[auth]), mailbox=kit.MAILBOX)
    assert note.kind == "credit", note.reason


def test_a_bank_that_requires_dmarc(kit, monkeypatch):
    from autopay_bankmail import trust

    monkeypatch.setitem(
        trust.BANK_SENDERS, kit.BANK, trust.BankSender(kit.BANK, dmarc_required=True)
    )
    signed = "mx.google.com; dkim=pass header.d=info.uzcard.uz"
    note = parse_notification(kit.mail(kit.bank_body(), auth=[signed]), mailbox=kit.MAILBOX)
    assert note.refusal == "dmarc_fail"
    assert parse_notification(kit.mail(kit.bank_body()), mailbox=kit.MAILBOX).kind == "credit"


@pytest.mark.parametrize(
    ("from_", "refusal"),
    [
        ("UZCARD <noreply@info-uzcard.example>", "not_bank_sender"),
        ("UZCARD <attacker@info.uzcard.uz>", "not_bank_sender"),
        ('"noreply@info.uzcard.uz" <attacker@evil.example>', "not_bank_sender"),
        ("UZCARD <noreply@info.uzcard.uz.evil.example>", "not_bank_sender"),
        ('"noreply"@info.uzcard.uz.evil.example', "malformed_from"),
        ("noreply@info.uzcard.uz, attacker@evil.example", "multiple_from"),
        (["UZCARD <noreply@info.uzcard.uz>", "UZCARD <noreply@info.uzcard.uz>"], "multiple_from"),
        (["UZCARD <noreply@info.uzcard.uz>", "attacker@evil.example"], "multiple_from"),
        ("noreply@info.uzcard.uz <attacker@evil.example>", "malformed_from"),
        ("UZCARD <noreply@info.uzcard.uz", "malformed_from"),
    ],
)
def test_wrong_from_is_refused(kit, from_, refusal):
    note = parse_notification(kit.mail(kit.bank_body(), from_=from_), mailbox=kit.MAILBOX)
    assert (note.kind, note.refusal) == ("rejected", refusal), note.reason


def test_bare_and_named_bank_address_are_accepted(kit):
    for from_ in ("noreply@info.uzcard.uz", "UZCARD <NoReply@Info.Uzcard.uz>"):
        note = parse_notification(kit.mail(kit.bank_body(), from_=from_), mailbox=kit.MAILBOX)
        assert note.kind == "credit", note.reason


@pytest.mark.parametrize(
    "to",
    [
        "someone.else@gmail.com",
        "shop.kassa@gmail.com.evil.example",
        '"shop.kassa@gmail.com"@evil.example',
        "shop.kassa@gmail.com <someone.else@gmail.com>",
        "undisclosed-recipients:;",
    ],
)
def test_notification_to_another_mailbox_is_replayed(kit, to):
    note = parse_notification(kit.mail(kit.bank_body(), to=to), mailbox=kit.MAILBOX)
    assert (note.kind, note.refusal) == ("rejected", "replayed"), note.reason


def test_to_may_list_the_mailbox_among_others(kit):
    raw = kit.mail(kit.bank_body(), to=f"Accountant <acc@shop.example>, {kit.MAILBOX}")
    assert parse_notification(raw, mailbox=kit.MAILBOX).kind == "credit"


def test_without_a_mailbox_the_to_address_is_taken(kit):
    assert parse_notification(kit.mail(kit.bank_body())).kind == "credit"
    note = parse_notification(kit.mail(kit.bank_body(), extra=[], to=""))
    assert note.refusal in {"mailbox_unknown", "replayed"}


def test_manually_forwarded_bank_mail_is_refused(kit):
    raw = kit.mail(
        "---------- Forwarded message ---------\n" + kit.bank_body(),
        from_=f"Me <{kit.MAILBOX}>",
        subject="Fwd: UZCARD INFO",
        auth=[kit.MAILBOX_AUTH],
    )
    assert parse_notification(raw, allow_forwarded=True).kind == "rejected"


# --- forwarded texts ----------------------------------------------------------------------


def test_forwarded_sms_from_the_mailbox_is_a_credit(kit):
    raw = kit.forwarded(kit.CREDIT_LINE)
    assert parse_notification(raw, allow_forwarded=True).kind == "credit"
    assert parse_notification(raw, mailbox=kit.MAILBOX, allow_forwarded=True).kind == "credit"


def test_forwarders_are_off_by_default(kit):
    note = parse_notification(kit.forwarded(kit.CREDIT_LINE), mailbox=kit.MAILBOX)
    assert note.refusal == "forwarder_disabled"


@pytest.mark.parametrize(
    "from_",
    [
        '"UZCARD" <stranger@gmail.com>',
        '"UZCARD" <shop.kassa@gmail.com.evil.example>',
        '"UZCARD" <"shop.kassa@gmail.com"@evil.example>',
    ],
)
def test_forwarded_from_another_address_is_refused(kit, from_):
    raw = kit.forwarded(kit.CREDIT_LINE, from_=from_)
    note = parse_notification(raw, mailbox=kit.MAILBOX, allow_forwarded=True)
    assert note.refusal == "forwarder_foreign", note.reason


def test_a_bank_address_forwarding_a_text_is_refused(kit):
    raw = kit.forwarded(kit.CREDIT_LINE, from_='"UZCARD" <noreply@info.uzcard.uz>')
    note = parse_notification(raw, mailbox=kit.MAILBOX, allow_forwarded=True)
    assert note.kind == "rejected"


@pytest.mark.parametrize(
    ("auth", "refusal"),
    [
        ([], "unauthenticated"),
        (
            ["mx.google.com; dkim=fail header.i=@gmail.com; spf=fail smtp.mailfrom=a@gmail.com"],
            "forged",
        ),
        (["mx.google.com; dkim=pass header.i=@evil.example"], "misaligned"),
        (["mx.google.com; spf=pass smtp.mailfrom=shop.kassa@gmail.com"], "spf_only"),
        (["mx.evil.example; dkim=pass header.i=@gmail.com", "MAILBOX_AUTH"], "untrusted_receiver"),
        (
            ["mx.google.com; dkim=pass header.i=@gmail.com; dmarc=fail header.from=gmail.com"],
            "dmarc_fail",
        ),
    ],
)
def test_forwarded_needs_rules_one_and_two_for_the_mailbox_domain(kit, auth, refusal):
    auth = [kit.MAILBOX_AUTH if a == "MAILBOX_AUTH" else a for a in auth]
    raw = kit.forwarded(kit.CREDIT_LINE, auth=auth)
    note = parse_notification(raw, mailbox=kit.MAILBOX, allow_forwarded=True)
    assert (note.kind, note.refusal) == ("rejected", refusal), note.reason


def test_forwarded_sms_must_come_from_the_bank_sender_id(kit):
    raw = kit.forwarded(kit.CREDIT_LINE, sender="+998901234567")
    note = parse_notification(raw, mailbox=kit.MAILBOX, allow_forwarded=True)
    assert note.refusal == "forwarder_sender"
    assert "+998901234567" in note.reason
    mixed = kit.forwarded(kit.CREDIT_LINE, subject="SMS from +998901234567")
    assert parse_notification(mixed, mailbox=kit.MAILBOX, allow_forwarded=True).kind == "rejected"
    unnamed = kit.forwarded(kit.CREDIT_LINE, wrapper=False, subject="Notification")
    note = parse_notification(unnamed, mailbox=kit.MAILBOX, allow_forwarded=True)
    assert note.kind == "rejected"


def test_gmail_address_variants_are_the_same_mailbox(kit):
    raw = kit.forwarded(kit.CREDIT_LINE, from_='"UZCARD" <Shop.Kassa@gmail.com>')
    note = parse_notification(raw, mailbox="shopkassa+bank@googlemail.com", allow_forwarded=True)
    assert note.kind == "credit", note.reason


def test_unrelated_mail_is_ignored_not_rejected(kit):
    raw = kit.mail("Hi, lunch tomorrow?", from_="friend@example.com", subject="Lunch")
    note = parse_notification(raw)
    assert (note.kind, note.format, note.refusal) == ("ignored", None, None)
    code = kit.mail("Your code is 123456", from_="noreply@shop.example", subject="Code")
    assert parse_notification(code).kind == "ignored"


# --- screening by headers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "forwarded", "candidate"),
    [
        (b"From: UZCARD <noreply@info.uzcard.uz>\r\n", False, True),
        (b"From: NoReply@Info.Uzcard.UZ\r\n", False, True),
        (b"From: friend@mail.ru\r\nFrom: noreply@info.uzcard.uz\r\n", False, True),
        (b'From: "noreply@info.uzcard.uz" <friend@mail.ru>\r\n', False, False),
        (b"From: Shop <s.h.o.p.kassa@gmail.com>\r\n", True, True),
        (b"From: Shop <shop.kassa@gmail.com>\r\n", False, False),
        (b"From: friend@mail.ru\r\n", True, False),
        (b"Subject: no sender at all\r\n", True, False),
        (b"\xff\xfe\x00garbage", True, False),
        (b"", False, False),
    ],
)
def test_screening(header, forwarded, candidate):
    assert is_candidate(header, mailbox=MAILBOX, allow_forwarded=forwarded) is candidate
