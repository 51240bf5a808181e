"""The merchant bot through the whole stack (issue #9), driven as a merchant would drive it: by
writing to it and pressing its buttons in a (fake) Telegram chat.

Everything else is real processes: the bot calls the gateway's public and admin APIs; cards are
verified by a real IMAP login; bank mails go through mail-ingest, the matcher and the notifier;
the bot learns of unmatched credits, paid subscription orders and mailbox health from the
streams. The tests run in order and share one merchant, as one merchant's day would.

What they survive: a wrong App Password (its message is deleted all the same), a password that
stops working (told once, its recovery once), a second use of a single-use invite, a rotated
key (the old one is refused at once), a tap that pays the wrong order (the gateway checks the
same card and merchant; the button only offers that card's open orders).
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from autopay_merchant_bot.texts import TEXTS
from autopay_testing.telegram import TelegramControl
from autopay_testing.waiting import eventually

from .conftest import autopay

pytestmark = pytest.mark.e2e

CHAT = 7_000_001
SHOP_GMAIL = "botshop@gmail.com"
SHOP_CARD = "1234"


def uz(key: str) -> str:
    """A recognisable start of the Uzbek text `key` (before its first field)."""
    return TEXTS[key]["uz"].split("{")[0][:40]


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    # mail-ingest retries a refused login every 2 s (not 10 min), so recovery shows quickly;
    # a mailbox down for 20 s is told
    return {"AUTOPAY_AUTH_RETRY_S": "2", "AUTOPAY_MAILBOX_DOWN_GRACE_S": "20"}


@pytest.fixture(scope="module")
def telegram(stack):
    assert stack.info["bot"]["fake"] is True
    with TelegramControl(stack.info["bot"]["telegram_api_url"]) as control:
        yield control


class Chat:
    def __init__(self, telegram: TelegramControl, chat_id: int) -> None:
        self.telegram = telegram
        self.chat_id = chat_id
        self.last = 0

    def say(self, text: str) -> int:
        self.last = self.telegram.message(self.chat_id, text, user_id=self.chat_id)
        return self.last

    def expect(self, fragment: str, timeout: float = 20.0):
        """The first bot message after the last thing this test looked at that contains
        `fragment`."""
        found = self.telegram.wait_for_bot_message(
            self.chat_id, lambda m: fragment in (m.text or ""), timeout=timeout, after=self.last
        )
        self.last = found.message_id
        return found

    def press(self, message, data_prefix: str, text: str = "") -> None:
        """Press the first button under `message` whose data starts with `data_prefix` and
        whose label contains `text`."""
        data = next(
            b["callback_data"]
            for row in message.reply_markup["inline_keyboard"]
            for b in row
            if b.get("callback_data", "").startswith(data_prefix) and text in b["text"]
        )
        self.telegram.press(self.chat_id, message.message_id, data, user_id=self.chat_id)

    def bot_texts(self) -> list[str]:
        return [m.text or "" for m in self.telegram.bot_messages(self.chat_id)]


@pytest.fixture(scope="module")
def merchant(stack, telegram) -> dict:
    return {"chat": Chat(telegram, CHAT)}


def _api(stack, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.info["gateway_url"], headers={"x-api-key": key}, timeout=10)


def test_onboarding_by_invite(stack, telegram, merchant):
    invite = json.loads(
        autopay("admin", "invite", "create", "--state-dir", str(stack.state_dir), "--json")
    )
    chat: Chat = merchant["chat"]
    chat.say("/start")
    chat.expect(uz("ask_invite"))
    chat.say(invite["code"])
    chat.expect(uz("ask_shop_name"))
    chat.say("Bot test shop")
    shown = chat.expect("ap_live_").text
    api_key = re.search(r"ap_live_[A-Za-z0-9_-]+", shown).group(0)
    assert re.search(r"whsec_\S+", shown)
    with _api(stack, api_key) as api:
        sub = api.get("/api/subscription")
        assert sub.status_code == 200, sub.text
        assert sub.json()["tariff_name"] == "Trial"
        assert sub.json()["active"] is True
    merchant["api_key"] = api_key

    # the invite was for one merchant: another chat cannot join with it
    other = Chat(telegram, CHAT + 1)
    other.say(f"/start {invite['code']}")
    other.expect(uz("ask_shop_name"))
    other.say("Freeloader")
    other.expect(uz("invite_invalid"))


def _add_card(chat: Chat, card_last4: str, password: str) -> int:
    chat.say("/addcard")
    chat.expect(uz("ask_card_last4"))
    chat.say(card_last4)
    chat.expect(uz("ask_gmail"))
    chat.say(SHOP_GMAIL)
    chat.expect("myaccount.google.com/apppasswords")
    return chat.say(password)


def test_a_wrong_app_password_gets_the_hint_and_its_message_is_deleted(stack, telegram, merchant):
    chat: Chat = merchant["chat"]
    password_message = _add_card(chat, SHOP_CARD, "wrongwrongwrongx")
    failed = chat.expect(uz("card_failed"), timeout=30)
    assert "App" in failed.text  # the gateway's hint about App Passwords, in Uzbek
    assert password_message in telegram.deleted(CHAT)
    assert any(uz("password_deleted") in t for t in chat.bot_texts())
    with _api(stack, merchant["api_key"]) as api:
        assert api.get("/api/my-cards").json()["cards"] == []


def test_adding_a_card_deletes_the_password_message(stack, telegram, merchant):
    chat: Chat = merchant["chat"]
    password_message = _add_card(chat, SHOP_CARD, stack.info["imap"]["password"])
    chat.expect(f"****{SHOP_CARD}", timeout=30)
    assert password_message in telegram.deleted(CHAT)
    assert all(
        stack.info["imap"]["password"] not in (m.text or "") for m in telegram.messages(CHAT)
    )
    with _api(stack, merchant["api_key"]) as api:
        cards = api.get("/api/my-cards").json()["cards"]
        assert [(c["card_last4"], c["gmail"]) for c in cards] == [(SHOP_CARD, SHOP_GMAIL)]
        eventually(
            lambda: api.get("/api/my-cards").json()["cards"][0].get("status") == "connected",
            30,
            "the new mailbox watched",
        )


def test_listing_and_removing_cards(stack, telegram, merchant):
    chat: Chat = merchant["chat"]
    _add_card(chat, "5678", stack.info["imap"]["password"])
    chat.expect("****5678", timeout=30)
    chat.say("/cards")
    listing = chat.expect(uz("cards_header"))
    assert f"****{SHOP_CARD}" in listing.text and "****5678" in listing.text
    chat.press(listing, "rm:", text="5678")
    assert "****5678" in chat.expect(uz("card_removed").split("*")[0]).text
    with _api(stack, merchant["api_key"]) as api:
        assert [c["card_last4"] for c in api.get("/api/my-cards").json()["cards"]] == [SHOP_CARD]


def test_rotating_the_key(stack, telegram, merchant):
    chat: Chat = merchant["chat"]
    chat.say("/key")
    confirm = chat.expect(uz("key_confirm"))
    chat.press(confirm, "key:")
    new_key = re.search(r"ap_live_[A-Za-z0-9_-]+", chat.expect("ap_live_").text).group(0)
    assert new_key != merchant["api_key"]
    with _api(stack, merchant["api_key"]) as old:
        eventually(lambda: old.get("/api/my-cards").status_code == 401, 10, "the old key refused")
    with _api(stack, new_key) as new:
        assert new.get("/api/my-cards").status_code == 200
    merchant["api_key"] = new_key


def test_an_unmatched_credit_is_paid_by_one_tap(stack, telegram, merchant, receiver):
    chat: Chat = merchant["chat"]
    with _api(stack, merchant["api_key"]) as api:
        created = api.post(
            "/api/create-payment",
            json={
                "amount": 61_037,
                "card_last4": SHOP_CARD,
                "gmail": SHOP_GMAIL,
                "webhook_url": receiver.url,
            },
        )
        assert created.status_code == 200, created.text
        order_id = created.json()["order_id"]
        # the customer sends 61 000 instead of 61 037: nothing pays automatically
        autopay(
            *("dev", "send-credit", "--state-dir", str(stack.state_dir), "--amount", "61000"),
            *("--card-last4", SHOP_CARD, "--gmail", SHOP_GMAIL),
        )
        alert = chat.expect(uz("credit_unmatched"), timeout=30)
        buttons = [b for row in alert.reply_markup["inline_keyboard"] for b in row]
        assert any(f"#{order_id}" in b["text"] for b in buttons), buttons
        assert buttons[-1]["callback_data"].startswith("d:")  # and one to dismiss
        chat.press(alert, "m:", text=f"#{order_id}")
        chat.expect(f"#{order_id}")
        webhook = eventually(lambda: receiver.for_order(order_id), 30, "the order's webhook")[0]
        assert json.loads(webhook["body"])["status"] == "paid"
        assert (
            api.post("/api/check-payment", json={"order_id": order_id}).json()["status"] == "paid"
        )
        record = api.get("/api/transactions", params={"status": "matched"}).json()["transactions"]
        assert any(t["order_id"] == order_id and t["manual"] for t in record)
    # exactly one alert for that credit
    assert sum(uz("credit_unmatched") in t for t in chat.bot_texts()) == 1


def test_buying_a_subscription_through_the_pipeline(stack, telegram, merchant):
    chat: Chat = merchant["chat"]
    with _api(stack, merchant["api_key"]) as api:
        before = api.get("/api/subscription").json()
    chat.say("/subscription")
    offer = chat.expect("Trial")
    chat.press(offer, "buy:Pro")
    created = chat.expect(uz("purchase_created").split("\n")[0])
    amount = int("".join(re.search(r"Summa: (\d[\d ]*\d)", created.text).group(1).split()))
    assert 99_001 <= amount <= 99_099
    # the merchant transfers exactly that to the operator's card: a bank mail to its mailbox
    stack.send_credit(amount)
    chat.expect(uz("purchase_paid"), timeout=40)
    with _api(stack, merchant["api_key"]) as api:
        after = api.get("/api/subscription").json()
    assert after["tariff_name"] == "Pro"
    left = before["max_payments"] - before["payments_used"]
    assert after["max_payments"] - after["payments_used"] == left + 10_000
    assert after["expires_at"] > before["expires_at"]


def test_a_password_that_stops_working_is_told_once_and_its_recovery_once(stack, merchant):
    chat: Chat = merchant["chat"]
    state = str(stack.state_dir)
    autopay(
        "dev",
        "imap-password",
        "--state-dir",
        state,
        "--gmail",
        SHOP_GMAIL,
        "--password",
        "revoked-by-owner",
    )
    chat.expect(SHOP_GMAIL, timeout=30)
    time.sleep(6)  # several refused logins later (one every 2 s), still one alert
    texts = chat.bot_texts()
    assert sum(uz("mailbox_auth_failed").strip() in t and "🔴" in t for t in texts) == 1, texts[-5:]
    autopay(
        "dev",
        "imap-password",
        "--state-dir",
        state,
        "--gmail",
        SHOP_GMAIL,
        "--password",
        stack.info["imap"]["password"],
    )
    chat.expect("🟢", timeout=30)
    time.sleep(3)
    texts = chat.bot_texts()
    assert sum(t.startswith("🟢") and SHOP_GMAIL in t for t in texts) == 1, texts[-5:]
    assert sum(t.startswith("🔴") and SHOP_GMAIL in t for t in texts) == 1, texts[-5:]
