from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from autopay_contracts import Order, OrderCancelled, OrderCreated, OrderExpired, OrderPaid
from autopay_notifier.domain import (
    AttemptResult,
    RetryPolicy,
    decide,
    delivery_id_for,
    encode_body,
    parse_retry_after,
    wants_webhook,
    webhook_headers,
    webhook_payload,
)
from autopay_store.accounts import new_webhook_secret

NOW = datetime(2026, 5, 16, 4, 30, tzinfo=UTC)  # 09:30 in Tashkent


def order(**kw) -> Order:
    base = dict(
        order_id="10001",
        merchant_id="7",
        mailbox_id="mbx1",
        gmail="karta@gmail.com",
        card_last4="6412",
        amount_tiyin=5_003_700,
        created_at=NOW - timedelta(minutes=1),
        expires_at=NOW + timedelta(minutes=4),
        client_user_id="123456789",
        client_user_data={"plan": "premium"},
        webhook_url="https://botingiz.uz/webhook",
    )
    return Order(**(base | kw))


def test_payload_is_the_seed_webhook():
    event = OrderPaid(order=order(), credit_id="c1", paid_at=NOW)
    assert webhook_payload(event) == {
        "order_id": "10001",
        "status": "paid",
        "amount": 50037,
        "card_last4": "6412",
        "gmail": "karta@gmail.com",
        "client_user_id": "123456789",
        "client_user_data": {"plan": "premium"},
        "paid_at": "2026-05-16T09:30:00",
    }


def test_payload_of_expired_has_null_paid_at_and_empty_user_data():
    event = OrderExpired(order=order(client_user_data=None), expired_at=NOW)
    payload = webhook_payload(event)
    assert payload["status"] == "expired"
    assert payload["paid_at"] is None
    assert payload["client_user_data"] == {}


def test_which_events_become_webhooks():
    paid = OrderPaid(order=order(), credit_id="c1", paid_at=NOW)
    assert wants_webhook(paid)
    assert not wants_webhook(OrderPaid(order=order(webhook_url=None), credit_id="c", paid_at=NOW))
    assert not wants_webhook(OrderExpired(order=order(), expired_at=NOW))
    opted = order(notify_events=("paid", "expired", "cancelled"))
    assert wants_webhook(OrderExpired(order=opted, expired_at=NOW))
    assert wants_webhook(OrderCancelled(order=opted, cancelled_at=NOW))
    assert not wants_webhook(OrderCreated(order=opted))  # type: ignore[arg-type]


def test_delivery_id_is_stable_for_the_same_fact():
    first = OrderPaid(order=order(), credit_id="c1", paid_at=NOW)
    again = OrderPaid(order=order(), credit_id="c1", paid_at=NOW + timedelta(seconds=2))
    assert delivery_id_for(first) == delivery_id_for(again)
    assert "." not in delivery_id_for(first)


def test_signature_verifies_with_every_valid_secret_and_not_with_others():
    current, previous, stranger = (new_webhook_secret() for _ in range(3))
    body = encode_body(webhook_payload(OrderPaid(order=order(), credit_id="c1", paid_at=NOW)))
    ts = int(datetime.now(UTC).timestamp())
    headers = webhook_headers(
        msg_id="abc", timestamp=ts, body=body, secrets=[current, previous], user_agent="t"
    )
    assert headers["webhook-signature"].count("v1,") == 2
    assert Webhook(current).verify(body, headers)["amount"] == 50037
    assert Webhook(previous).verify(body, headers)["order_id"] == "10001"
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(stranger).verify(body, headers)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(current).verify(body + b" ", headers)


POLICY = RetryPolicy(
    schedule=(5, 300, 1800), jitter=0.2, overload_floor_s=60, retry_after_cap_s=3600
)


@pytest.mark.parametrize("code", [200, 201, 204, 299])
def test_any_2xx_is_delivered(code):
    assert decide(POLICY, 1, AttemptResult(status_code=code), 0.5).verdict == "delivered"


@pytest.mark.parametrize("code", [301, 302, 400, 401, 404, 429, 500, 502, 503])
def test_other_codes_retry(code):
    decision = decide(POLICY, 1, AttemptResult(status_code=code), 0.0)
    assert decision.verdict == "retry"
    assert decision.delay_s is not None and decision.delay_s >= 5


def test_redirect_error_says_it_was_not_followed():
    decision = decide(POLICY, 1, AttemptResult(status_code=302), 0.0)
    assert "not followed" in (decision.error or "")


def test_410_stops_at_once():
    decision = decide(POLICY, 1, AttemptResult(status_code=410), 0.0)
    assert decision.verdict == "exhausted" and "410" in (decision.error or "")


def test_refused_destination_is_exhausted_without_retry():
    decision = decide(POLICY, 1, AttemptResult(error="private", refused=True), 0.0)
    assert decision.verdict == "exhausted" and decision.error == "private"


def test_last_attempt_exhausts():
    assert POLICY.max_attempts == 4
    assert decide(POLICY, 3, AttemptResult(status_code=500), 0.0).verdict == "retry"
    last = decide(POLICY, 4, AttemptResult(status_code=500), 0.0)
    assert last.verdict == "exhausted" and "4 attempts" in (last.error or "")


def test_schedule_jitter_is_additive_and_bounded():
    assert decide(POLICY, 2, AttemptResult(status_code=500), 0.0).delay_s == 300
    assert decide(POLICY, 2, AttemptResult(status_code=500), 0.999).delay_s == pytest.approx(359.94)


def test_timeouts_and_429_wait_at_least_the_overload_floor():
    assert decide(POLICY, 1, AttemptResult(timed_out=True, error="t"), 0).delay_s == 60
    assert decide(POLICY, 1, AttemptResult(status_code=429), 0).delay_s == 60


def test_retry_after_raises_the_delay_but_is_capped():
    hinted = AttemptResult(status_code=503, retry_after_s=900)
    assert decide(POLICY, 1, hinted, 0).delay_s == 900
    huge = AttemptResult(status_code=429, retry_after_s=10**6)
    assert decide(POLICY, 1, huge, 0).delay_s == 3600
    small = AttemptResult(status_code=503, retry_after_s=1)
    assert decide(POLICY, 2, small, 0).delay_s == 300


def test_parse_retry_after():
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after("Sat, 16 May 2026 04:32:00 GMT", NOW) == 120
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_lane_expects_at_least_the_age_of_its_oldest_running_attempt():
    from autopay_notifier.service import _Lane

    lane = _Lane()
    assert lane.attempt_s(100.0) == lane.avg_attempt_s
    lane.running["a"] = 90.0
    lane.running["b"] = 99.0
    assert lane.attempt_s(100.0) == 10.0
    lane.observe(20.0)
    assert lane.attempt_s(100.0) == 10.0
    del lane.running["a"]
    assert lane.attempt_s(100.0) == pytest.approx(0.8 * 0.05 + 0.2 * 20.0)


def test_cached_secret_box_decrypts_each_token_once_and_sees_new_tokens():
    from autopay_notifier.bootstrap import CachedSecretBox

    box = CachedSecretBox(CachedSecretBox.generate_key())
    old, new = box.encrypt("whsec_old"), box.encrypt("whsec_new")
    assert [box.decrypt(old), box.decrypt(old), box.decrypt(new)] == [
        "whsec_old",
        "whsec_old",
        "whsec_new",
    ]
    assert box.decrypt.cache_info().hits == 1
