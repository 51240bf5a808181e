from datetime import UTC, datetime, timedelta

import pytest

from autopay_contracts import (
    EVENT_TYPES,
    Namespace,
    Order,
    OrderCreated,
    OrderPaid,
    event_id,
    mailbox_id_for,
    parse_event,
    provision_streams,
)

NOW = datetime(2026, 5, 16, 4, 30, tzinfo=UTC)


def _order(**kw) -> Order:
    base = dict(
        order_id="10001",
        merchant_id="7",
        mailbox_id=mailbox_id_for("karta@gmail.com"),
        gmail="karta@gmail.com",
        card_last4="6412",
        amount_tiyin=5_003_700,
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=5),
        client_user_data={"plan": "premium"},
    )
    return Order(**(base | kw))


def test_event_id_is_deterministic_and_fact_specific():
    paid = OrderPaid(order=_order(), credit_id="c1", paid_at=NOW)
    again = OrderPaid(order=_order(), credit_id="c1", paid_at=NOW + timedelta(seconds=3))
    assert paid.event_id == again.event_id == event_id("order.paid", "10001")
    assert OrderCreated(order=_order()).event_id != paid.event_id
    assert paid.headers()["Nats-Msg-Id"] == paid.event_id


def test_subject_carries_owner_token():
    ns = Namespace()
    assert OrderCreated(order=_order()).subject(ns) == "autopay.v1.order.7.created"
    assert ns.credit("mbx1", "received") == "autopay.v1.credit.mbx1.received"
    with pytest.raises(ValueError):
        ns.order("bad.token", "paid")


def test_round_trip_every_type_by_type_field():
    evt = OrderPaid(order=_order(), credit_id="c1", paid_at=NOW, late=True)
    back = parse_event(evt.to_bytes())
    assert back == evt and isinstance(back, OrderPaid)
    assert set(EVENT_TYPES) >= {"order.created", "credit.received", "webhook.delivered"}
    with pytest.raises(ValueError):
        parse_event(b'{"type": "order.teleported"}')


def test_mailbox_id_ignores_case_and_space():
    assert mailbox_id_for(" Karta@Gmail.com") == mailbox_id_for("karta@gmail.com")


def test_card_last4_must_be_four_digits():
    with pytest.raises(ValueError):
        _order(card_last4="64a2")


async def test_provision_streams_is_idempotent(nats_client, namespace):
    js = nats_client.jetstream()
    first = await provision_streams(js, namespace)
    second = await provision_streams(js, namespace)
    try:
        assert first == second
        info = await js.stream_info(namespace.stream_name("ORDERS"))
        assert info.config.subjects == [f"{namespace.root}.v1.order.>"]
        ack = await js.publish(
            OrderCreated(order=_order()).subject(namespace),
            OrderCreated(order=_order()).to_bytes(),
            headers=OrderCreated(order=_order()).headers(),
        )
        dup = await js.publish(
            OrderCreated(order=_order()).subject(namespace),
            OrderCreated(order=_order()).to_bytes(),
            headers=OrderCreated(order=_order()).headers(),
        )
        assert dup.duplicate and dup.seq == ack.seq
    finally:
        for name in first:
            await js.delete_stream(name)
