from datetime import UTC, datetime, timedelta

import pytest
from faststream.nats import NatsBroker

from autopay_contracts import (
    MailboxConnected,
    Namespace,
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


async def test_publish_acked_retries_the_same_id_and_says_whether_it_was_refused(
    nats_url, namespace, streams
):
    """Survives: a publish whose PubAck was lost (it landed): the retry of the same
    `Nats-Msg-Id` is acknowledged as a duplicate. A publish no stream takes is `refused`."""
    from autopay_runtime.publishing import PublishFailed

    broker = NatsBroker(nats_url)
    publisher = EventPublisher(broker, namespace, [OrderCreated])
    await broker.start()
    try:
        real = publisher.publish
        calls: list[int] = []

        async def lose_first_ack(event):
            ack = await real(event)
            calls.append(ack.seq)
            if len(calls) == 1:
                raise PublishFailed("order.created: TimeoutError: no PubAck")
            return ack

        publisher.publish = lose_first_ack  # type: ignore[method-assign]
        ack = await publisher.publish_acked(OrderCreated(order=ORDER), attempts=3, backoff_s=0)
        assert ack.duplicate and calls == [ack.seq, ack.seq]
        publisher.publish = real  # type: ignore[method-assign]

        elsewhere = EventPublisher(broker, Namespace(namespace.root + "x"), [OrderCreated])
        with pytest.raises(PublishFailed) as failed:
            await elsewhere.publish_acked(OrderCreated(order=ORDER), attempts=2, backoff_s=0)
        assert failed.value.refused
    finally:
        await broker.stop()
