"""Per-format unit tests, including shapes the corpus does not have."""

from __future__ import annotations

from datetime import datetime

import pytest

from autopay_bankmail.envelope import Envelope
from autopay_bankmail.formats import (
    REGISTRY,
    cardxabar,
    decline,
    humo_bot,
    humo_sms,
    otp,
    uzcard_email,
    uzcard_line,
    uzcard_sms,
)
from autopay_bankmail.text import normalize
from autopay_bankmail.values import tiyin
from autopay_contracts.local_time import TASHKENT

AT_1007 = datetime(2026, 3, 14, 10, 7, tzinfo=TASHKENT)


def sms(text: str, sender: str = "UZCARD") -> Envelope:
    text = normalize(text)
    return Envelope(text=text, sms_text=text, sms_senders=(sender,))


def email(text: str, subject: str = "UZCARD INFO") -> Envelope:
    return Envelope(
        from_addresses=("noreply@info.uzcard.uz",), subject=subject, text=normalize(text)
    )


# --- money --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "decimal", "thousands", "expected"),
    [
        ("50037.00", ".", "", 5003700),
        ("50037", ".", "", 5003700),
        ("50037.5", ".", "", 5003750),
        ("1 500 076.00", ".", " ", 150007600),
        ("1.234.567,89", ",", ".", 123456789),
        ("5.000,00", ",", ".", 500000),
        ("150 000", ",", ". ", 15000000),
        ("-12.50", ".", "", -1250),
        ("50,037.00", ".", "", None),
        ("50.05", ",", ".", None),
        ("1 50 000.00", ".", " ", None),
        ("1.2.3", ".", "", None),
        ("", ".", "", None),
        ("9" * 40, ".", "", None),
    ],
)
def test_amounts_are_read_per_format_convention(number, decimal, thousands, expected):
    assert tiyin(number, decimal=decimal, thousands=thousands) == expected


# --- uzcard line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***4821. summa:50037.00 UZS "
        "balans:1287037.00 UZS",
        "Perevod na kartu: CLICK P2P, UZ, 14.03.26 10:07:41, karta ***4821. summa:50037.00 UZS,"
        " balans:1287037.00 UZS",
        "Perevod na kartu: CLICK P2P, TASHKENT, 14.03.26 10:07 karta ***4821. summa:50037.00 UZS",
        "Perevod na kartu: CLICK P2P,UZ,14.03.2026 10:07,karta***4821.summa:50037.00UZS",
        "perevod  na kartu :  CLICK P2P ,  UZ , 14.03.26  10:07 , karta *4821 . Summa: 50037 UZS",
        "Perevod na kartu: CLICK P2P, UZ, summa:50037.00 UZS, karta ***4821, 14.03.26 10:07",
        "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***4821. summa:50 037.00 UZS "
        "balans:-1 200.00 UZS",
        "FW: Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***4821. summa:50037.00 so'm",
    ],
)
def test_uzcard_line_variants_read_the_same_credit(line):
    got = uzcard_line.parse_line(line)
    assert got.kind == "credit", got.reason
    assert (got.amount_tiyin, got.currency, got.card_last4, got.occurred_at) == (
        5003700,
        "UZS",
        "4821",
        AT_1007,
    )


@pytest.mark.parametrize(
    ("label", "merchant", "kind"),
    [
        ("Popolnenie scheta", "SALARY PROJECT, TASHKENT", "credit"),
        ("Perevod na kartu", "ANORBANK HUMO UZCARD P2P", "credit"),
        ("Perevod na kartu", "EXAMPLEBANK SCHET TO UZCARD", "ignored"),
        ("Perevod na kartu", "EXAMPLEBANK UZCARD", "ignored"),
        ("Perevod na kartu", "P2PX SHOP", "ignored"),
        ("Pokupka", "KORZINKA", "debit"),
        ("E-Com oplata", "DEMO TAXI", "debit"),
        ("oplata", "DEMO", "debit"),
        ("Platezh", "EXAMPLEBANK UZCARD POPOLN SCHETA", "debit"),
        ("Debit online", "DEMO", "debit"),
        ("Spisanie c karty", "DEMO", "debit"),
        ("Vidacha nalichnykh v bankomate", "ATM 12", "debit"),
        ("Perevod c karti", "HUMO P2P", "debit"),
        ("OTMENA Pokupka", "DEMO MARKET", "reversal"),
        ("OTMENA Perevod na kartu", "CLICK P2P", "reversal"),
        ("Popolnenie nalichnimi v ATM", "ATM 3", "ignored"),
        ("Vozvrat", "CLICK P2P", "unparsed"),
        ("Perevod na kartu ", "CLICK P2P", "credit"),
    ],
)
def test_uzcard_direction_comes_from_the_label_allow_list(label, merchant, kind):
    line = f"{label}: {merchant}, UZ,14.03.26 10:07,karta ***4821. summa:50037.00 UZS"
    got = uzcard_line.parse_line(line)
    assert got.kind == kind, got.reason
    if kind != "credit":
        assert got.reason


@pytest.mark.parametrize(
    "line",
    [
        "Perevod na kartu: CLICK P2P, UZ,31.02.26 10:07,karta ***4821. summa:50037.00 UZS",
        "Perevod na kartu: CLICK P2P, UZ,14.03.26 25:07,karta ***4821. summa:50037.00 UZS",
        "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***4821. summa:50,037.00 UZS",
        "Perevod na kartu: CLICK P2P, UZ,karta ***4821. summa:50037.00 UZS",
        "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***482. summa:50037.00 UZS",
        "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***4821. summa:50037.00 UZS "
        "summa:10.00 UZS",
        "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***4821 karta ***1111. "
        "summa:50037.00 UZS",
        "CLICK P2P, UZ,14.03.26 10:07,karta ***4821. summa:50037.00 UZS",
    ],
)
def test_uzcard_broken_lines_are_unparsed(line):
    got = uzcard_line.parse_line(line)
    assert got.kind == "unparsed"
    assert got.reason


def test_uzcard_balance_is_not_the_amount():
    line = (
        "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***4821. "
        "balans:1287037.00 UZS summa:50037.00 UZS"
    )
    got = uzcard_line.parse_line(line)
    assert (got.kind, got.amount_tiyin, got.balance_tiyin) == ("credit", 5003700, 128703700)


def test_uzcard_foreign_currency_is_read_as_is():
    line = "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***4821. summa:50.00 USD"
    got = uzcard_line.parse_line(line)
    assert (got.amount_tiyin, got.currency) == (5000, "USD")


def test_uzcard_email_copies_must_agree():
    uz = "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***4821. summa:50037.00 UZS"
    ru = "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***4821. summa:50038.00 UZS"
    assert uzcard_email.parse(email(f"{uz}\n{uz}")).kind == "credit"
    got = uzcard_email.parse(email(f"{uz}\n\n{ru}"))
    assert got.kind == "unparsed"
    assert "disagree" in got.reason


def test_uzcard_email_without_a_line():
    assert uzcard_email.parse(email("Hurmatli mijoz!")).kind == "unparsed"
    assert uzcard_email.parse(email("Keshbek 5%", subject="Aksiya")).kind == "ignored"
    stranger = Envelope(from_addresses=("a@b.c",), subject="Hello", text="Hi")
    assert uzcard_email.parse(stranger) is None


def test_uzcard_sms_joins_a_line_broken_by_the_forwarder():
    text = "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,\nkarta ***4821. summa:50037.00 UZS"
    got = uzcard_sms.parse(sms(text))
    assert (got.kind, got.amount_tiyin) == ("credit", 5003700)


def test_uzcard_sms_with_two_transactions_is_unparsed():
    one = "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***4821. summa:50037.00 UZS"
    assert uzcard_sms.parse(sms(f"{one} {one}")).kind == "unparsed"


def test_uzcard_formats_split_by_channel():
    line = "Perevod na kartu: CLICK P2P, UZ,14.03.26 10:07,karta ***4821. summa:50037.00 UZS"
    assert uzcard_sms.parse(email(line)) is None
    assert uzcard_email.parse(sms(line)) is None


# --- humo bot -----------------------------------------------------------------------------

HUMO_LINES = [
    "🎉 Пополнение",
    "➕ 50.037,00 UZS",
    "📍 EXAMPLEPAY P2P>TASHK",
    "💳 HUMOCARD *2716",
    "🕓 10:07 14.03.2026",
    "💰 1.287.037,00 UZS",
]


@pytest.mark.parametrize(
    "text",
    [
        "\n".join(HUMO_LINES),
        "".join(HUMO_LINES),
        " ".join(HUMO_LINES).replace("➕", "➕\ufe0f"),
        "HUMO Card:\n" + "\n".join(HUMO_LINES).replace("50.037,00", "**50.037,00**"),
        "\n".join(reversed(HUMO_LINES[1:])) + "\n" + HUMO_LINES[0],
        "\n".join(HUMO_LINES).replace("Пополнение", "To'ldirish"),
        "\n".join(HUMO_LINES).replace("Пополнение", "Toʻldirish"),
        "\n".join(HUMO_LINES).replace("10:07 14.03.2026", "14.03.26 10:07"),
        "\n".join(HUMO_LINES).replace("HUMOCARD *2716", "HUMO-CARD *2716"),
        "\n".join(HUMO_LINES).replace("🕓", "🕘"),
    ],
)
def test_humo_bot_variants_read_the_same_credit(text):
    got = humo_bot.parse(sms(text, "HUMOcardbot"))
    assert got.kind == "credit", got.reason
    assert (got.amount_tiyin, got.card_last4, got.occurred_at, got.balance_tiyin) == (
        5003700,
        "2716",
        AT_1007,
        128703700,
    )


@pytest.mark.parametrize(
    ("replace", "kind"),
    [
        (("➕", "➖"), "unparsed"),  # 🎉 with ➖ conflicts
        (("🎉 Пополнение", "💸 Оплата"), "unparsed"),  # 💸 with ➕ conflicts
        (("Пополнение", "Конверсия"), "ignored"),
        (("Пополнение", "Отмена"), "reversal"),
        (("Пополнение", "Операция"), "unparsed"),
        (("🎉 Пополнение", "ℹ Счет по карте изменен"), "unparsed"),
        (("➕ 50.037,00 UZS", "💸 50.037,00 UZS"), "unparsed"),
        (("50.037,00", "50.05"), "unparsed"),
        (("50.037,00", "50037.00"), "unparsed"),
        (("14.03.2026", "31.02.2026"), "unparsed"),
        (("💳 HUMOCARD *2716", "💳 HUMOCARD *2716 💳 HUMOCARD *1111"), "unparsed"),
    ],
)
def test_humo_bot_direction_and_malformed_fields(replace, kind):
    text = "\n".join(HUMO_LINES).replace(*replace)
    got = humo_bot.parse(sms(text, "HUMOcardbot"))
    assert got.kind == kind, got.reason


def test_humo_bot_debit_by_sign_whatever_the_word():
    text = "\n".join(HUMO_LINES).replace("➕", "➖").replace("🎉 Пополнение", "💸 Операция")
    got = humo_bot.parse(sms(text, "HUMOcardbot"))
    assert (got.kind, got.amount_tiyin) == ("debit", 5003700)


def test_humo_bot_amounts():
    for shown, expected in (("1.234.567,89", 123456789), ("150 000", 15000000), ("5,00", 500)):
        text = "\n".join(HUMO_LINES).replace("50.037,00", shown)
        assert humo_bot.parse(sms(text, "HUMOcardbot")).amount_tiyin == expected


def test_humo_bot_usd_conversion_keeps_the_currency():
    text = "\n".join(HUMO_LINES).replace("50.037,00 UZS", "50,00 USD")
    got = humo_bot.parse(sms(text, "HUMOcardbot"))
    assert (got.kind, got.amount_tiyin, got.currency) == ("credit", 5000, "USD")


# --- cardxabar ----------------------------------------------------------------------------

XABAR_LINES = [
    "🟢 Kartaga o'tkazma",
    "➕ 50 037.00 UZS",
    "💳 ***4821",
    "📍 EXAMPLEPAY P2P UZCARD, UZ",
    "🕓 14.03.26 10:07",
    "💵 1 287 037.00 UZS",
]


@pytest.mark.parametrize(
    "text",
    [
        "\n".join(XABAR_LINES),
        "".join(XABAR_LINES),
        "\n".join(XABAR_LINES).replace("o'tkazma", "o‘tkazma"),
        "\n".join(XABAR_LINES).replace("💳 ***4821", "💳 860012**4821"),
        "\n".join(XABAR_LINES).replace("14.03.26 10:07", "14.03.2026 10:07"),
        "\n".join(XABAR_LINES).replace("50 037.00", "50037"),
        "\n".join(XABAR_LINES).replace("Kartaga o'tkazma", "Popolnenie scheta"),
    ],
)
def test_cardxabar_variants_read_the_same_credit(text):
    got = cardxabar.parse(sms(text, "CardXabar"))
    assert got.kind == "credit", got.reason
    assert (got.amount_tiyin, got.card_last4, got.occurred_at, got.balance_tiyin) == (
        5003700,
        "4821",
        AT_1007,
        128703700,
    )


@pytest.mark.parametrize(
    ("replace", "kind"),
    [
        (("➕", "➖"), "unparsed"),
        (("🟢", "🔴"), "unparsed"),
        (("🟢 Kartaga o'tkazma", "🟢 OTMENA Pokupka"), "reversal"),
        (("Kartaga o'tkazma", "Konversiya"), "ignored"),
        (("Kartaga o'tkazma", "Bonus"), "unparsed"),
        (("50 037.00", "50.037,00"), "unparsed"),
        (("💳 ***4821", "💳 ***48"), "unparsed"),
    ],
)
def test_cardxabar_direction_and_malformed_fields(replace, kind):
    text = "\n".join(XABAR_LINES).replace(*replace)
    assert cardxabar.parse(sms(text, "CardXabar")).kind == kind


def test_cardxabar_debit():
    text = "\n".join(XABAR_LINES).replace("➕", "➖").replace("🟢 Kartaga o'tkazma", "🔴 Pokupka")
    assert cardxabar.parse(sms(text, "CardXabar")).kind == "debit"


# --- humo sms -----------------------------------------------------------------------------

HUMO_SMS = (
    "HUMOCARD *3309: popolnenie 50037.00 UZS; EXAMPLE P2P>TASHKENT; 26-03-14 10:07; "
    "Dostupno: 912340.00 UZS"
)


@pytest.mark.parametrize(
    "text",
    [
        HUMO_SMS,
        HUMO_SMS.replace("HUMOCARD *", "HUMOCARD*"),
        HUMO_SMS.replace("; ", ";  "),
        HUMO_SMS.replace("26-03-14", "2026-03-14"),
        "FW: " + HUMO_SMS,
        HUMO_SMS.replace("; Dostupno", ";\nDostupno"),
        HUMO_SMS.replace("EXAMPLE P2P>TASHKENT", "DEMO; SHOP>TASHKENT"),
    ],
)
def test_humo_sms_variants_read_the_same_credit(text):
    got = humo_sms.parse(sms(text, "HUMO"))
    assert got.kind == "credit", got.reason
    assert (got.amount_tiyin, got.card_last4, got.occurred_at, got.balance_tiyin) == (
        5003700,
        "3309",
        AT_1007,
        91234000,
    )


@pytest.mark.parametrize(
    ("replace", "kind"),
    [
        (("popolnenie", "oplata"), "debit"),
        (("popolnenie", "operacija"), "debit"),
        (("popolnenie", "otmena oplata"), "reversal"),
        (("popolnenie", "bonus"), "unparsed"),
        (("26-03-14", "26-02-31"), "unparsed"),
        (("26-03-14 10:07; ", ""), "unparsed"),
        (("50037.00", "50,037.00"), "unparsed"),
    ],
)
def test_humo_sms_operations_and_malformed_fields(replace, kind):
    assert humo_sms.parse(sms(HUMO_SMS.replace(*replace), "HUMO")).kind == kind


def test_humo_sms_two_transactions_are_unparsed():
    assert humo_sms.parse(sms(f"{HUMO_SMS} {HUMO_SMS}", "HUMO")).kind == "unparsed"


def test_visa_semicolon_sms_with_commission_is_a_debit():
    text = (
        "VISA *6150: oplata 120.00 USD;. Komissiya za operaciju: 1.20 USD DEMO ONLINE STORE; "
        "26-03-14 22:41; Dostupno: 377.85 USD"
    )
    got = humo_sms.parse(sms(text, "HUMO"))
    assert (got.kind, got.amount_tiyin, got.currency) == ("debit", 12000, "USD")


# --- non-transactions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "<#> Kod podtverzhdeniya: 886001. Nikomu ne soobshchayte. Karta *8081",
        "Kod: 123456. Podtverdite oplatu 50037.00 UZS karta ***4821",
        "Ваш код 4821",
        "Tasdiqlash kodi 552211, hech kimga bermang",
    ],
)
def test_one_time_codes_are_ignored(text):
    got = otp.parse(sms(text))
    assert got is not None
    assert got.kind == "ignored"


def test_ordinary_mail_with_a_code_is_not_a_bank_otp():
    env = Envelope(from_addresses=("noreply@shop.example",), text="Your code is 123456")
    assert otp.parse(env) is None


def test_declined_operation_is_ignored():
    text = (
        "Hisobda mablag' yetarli emas. Nedostatochno sredstv. Pokupka: DEMO, UZ,14.03.26 10:07,"
        "karta ***4821. summa:50037.00 UZS"
    )
    assert decline.parse(sms(text)).kind == "ignored"


def test_registry_has_one_module_per_format():
    names = [fmt.name for fmt in REGISTRY]
    assert len(names) == len(set(names))
    assert {"uzcard-email", "uzcard-sms", "humo-bot", "cardxabar", "humo-sms", "otp"} <= set(names)
    for fmt in REGISTRY:
        if fmt.channel == "forwarded":
            assert fmt.sms_senders, f"{fmt.name} must name the bank's SMS senders"
