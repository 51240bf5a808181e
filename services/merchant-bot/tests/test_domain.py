"""The bot's pure decisions: mailbox health alerts, quota levels, candidate orders, input."""

from datetime import UTC, datetime, timedelta

import pytest

from autopay_merchant_bot import domain
from autopay_store.merchant_bot import MailboxAlertState, RecentOrder


def run(events: list[str]) -> list[str]:
    """The alerts a sequence of mailbox events produces (with the 'down lasted' sweep after
    each `sweep`)."""
    state: MailboxAlertState | None = None
    told = []
    for event in events:
        change = (
            domain.down_lasted(state)
            if event == "sweep"
            else domain.mailbox_change(state, f"mailbox.{event}")
        )
        if change is None:
            continue
        state = change.state
        if change.alert:
            told.append(change.alert)
    return told


def test_a_revoked_password_is_told_once_and_its_recovery_once():
    events = ["connected", "down", "auth_failed", "down", "auth_failed", "auth_failed", "up"]
    assert run(events) == ["mailbox_auth_failed", "mailbox_recovered"]


def test_a_short_drop_is_not_told_but_a_long_one_is_with_its_recovery():
    assert run(["connected", "down", "up", "down", "up"]) == []
    assert run(["connected", "down", "sweep", "sweep", "up"]) == [
        "mailbox_down",
        "mailbox_recovered",
    ]


def test_the_first_connection_says_nothing():
    assert run(["connected"]) == []
    assert run(["up", "connected"]) == []


@pytest.mark.parametrize(
    ("used", "limit", "level"),
    [(0, 100, 0), (79, 100, 0), (80, 100, 80), (99, 100, 80), (100, 100, 100), (5, 0, 100)],
)
def test_quota_levels(used, limit, level):
    assert domain.quota_level(used, limit) == level


def _order(order_id: str, amount: int, status: str, age_s: int) -> RecentOrder:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    return RecentOrder(order_id, "7", "mb", "6412", amount, status, now - timedelta(seconds=age_s))


def test_candidates_are_open_orders_named_first_then_closest_in_amount():
    orders = [
        _order("10001", 5_000_000, "waiting", 10),
        _order("10002", 5_003_700, "expired", 400),
        _order("10003", 5_003_700, "paid", 5),
        _order("10004", 9_000_000, "waiting", 1),
        _order("10005", 5_003_600, "cancelled", 1),
    ]
    picked = domain.candidates(orders, 5_003_700, limit=3, named=("10004",))
    assert [o.order_id for o in picked] == ["10004", "10002", "10001"]
    assert [o.order_id for o in domain.candidates(orders, 5_003_700, limit=1)] == ["10002"]


def test_input_shapes():
    assert domain.looks_like_app_password("abcd efgh ijkl mnop")
    assert domain.looks_like_app_password("abcdefghijklmnop")
    assert not domain.looks_like_app_password("hello there")
    assert domain.looks_like_address("shop.owner+x@gmail.com")
    assert not domain.looks_like_address("not an address")
    assert domain.som(5_003_700) == "50 037"
    assert domain.som(5_003_750) == "50 037.50"
