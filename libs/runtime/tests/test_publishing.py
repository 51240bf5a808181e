from datetime import UTC, datetime, timedelta

import pytest
from faststream.nats import NatsBroker

from autopay_contracts import (
    MailboxConnected,
    Order,
    OrderCreated,
    OrderPaid,
    mailbox_id_for,
)
from autopay_runtime.publishing import EventPublisher

NOW = datetime(2026, 5, 16, 4, 30, tzinfo=UTC)
ORDER = Order(
    order_id="10001",
    merchant_id="7",
    mailbox_id=mailbox_id_for("karta@gmail.com"),
    gmail="karta@gmail.com",
    card_last4="6412",
    amount_tiyin=5_003_700,
    created_at=NOW,
    expires_at=NOW + timedelta(minutes=5),
)


async def test_publishes_to_the_event_subject_once(nats_url, nats_client, namespace, streams):
    broker = NatsBroker(nats_url)
    publisher = EventPublisher(broker, namespace, [OrderCreated, OrderPaid])
    await broker.start()
    try:
        first = await publisher.publish(OrderCreated(order=ORDER))
        again = await publisher.publish(OrderCreated(order=ORDER))
        assert again.duplicate and again.seq == first.seq
        with pytest.raises(TypeError):
            await publisher.publish(MailboxConnected(mailbox_id="m", gmail="g", at=NOW))
    finally:
        await broker.stop()
    js = nats_client.jetstream()
    stored = await js.get_last_msg(namespace.stream_name("ORDERS"), namespace.order("7", "created"))
    assert stored.headers["Nats-Msg-Id"] == OrderCreated(order=ORDER).event_id
    assert OrderCreated.model_validate_json(stored.data) == OrderCreated(order=ORDER)


def test_publishers_appear_in_the_asyncapi_schema(namespace):
    from faststream import FastStream

    broker = NatsBroker()
    EventPublisher(broker, namespace, [OrderPaid])
    schema = FastStream(broker).schema.to_specification().to_jsonable()
    assert any(namespace.order("*", "paid") in str(ch) for ch in schema["channels"].values())
    assert "OrderPaid" in str(schema["components"]["schemas"])


async def test_publish_many_returns_each_ack_or_failure(nats_url, nats_client, namespace, streams):
    from autopay_runtime.publishing import PublishFailed

    broker = NatsBroker(nats_url)
    publisher = EventPublisher(broker, namespace, [OrderCreated, OrderPaid])
    await broker.start()
    try:
        created, paid = (
            OrderCreated(order=ORDER),
            OrderPaid(order=ORDER, credit_id="c", paid_at=NOW),
        )
        first = await publisher.publish_many([created, paid])
        assert [bool(r.duplicate) for r in first] == [False, False]
        assert first[1].seq == first[0].seq + 1
        again = await publisher.publish_many([created])
        assert again[0].duplicate and again[0].seq == first[0].seq

        await nats_client.jetstream().delete_stream(namespace.stream_name("ORDERS"))
        (missing,) = await publisher.publish_many([paid])
        assert isinstance(missing, PublishFailed)
        with pytest.raises(TypeError):
            await publisher.publish_many([MailboxConnected(mailbox_id="m", gmail="g", at=NOW)])
    finally:
        await broker.stop()
