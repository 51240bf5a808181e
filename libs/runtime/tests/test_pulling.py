"""`PullConsumer` on a real NATS server: every message of a batch reaches the handler in stream
order, a handler that raises neither stops the loop nor loses the message (it comes back after
the ack wait), and a durable an older version left is brought to this configuration."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig

from autopay_runtime.pulling import PullConsumer


async def test_a_batch_in_order_and_a_failed_message_comes_back(nats_client, namespace, streams):
    js = nats_client.jetstream()
    stream = namespace.stream_name("ORDERS")
    subject = namespace.order("*", "*")
    # an older version's durable: its ack wait was 30 s, a failed message would wait that long
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name="pull-test", filter_subject=subject, ack_wait=30, max_deliver=5
        ),
    )
    for i in range(5):
        await js.publish(namespace.order("7", "created"), f"m{i}".encode())

    seen: list[str] = []
    failed_once = False
    done = asyncio.Event()

    async def handle(msg: Msg) -> None:
        nonlocal failed_once
        seen.append(msg.data.decode())
        if msg.data == b"m2" and not failed_once:
            failed_once = True
            raise RuntimeError("a bug in the handler")
        await msg.ack()
        if seen.count("m2") == 2:
            done.set()

    consumer = PullConsumer(
        lambda: js,
        handle,
        stream=stream,
        subject=subject,
        durable="pull-test",
        config=ConsumerConfig(ack_wait=1, max_deliver=-1),
        batch=10,
        fetch_timeout_s=0.5,
    )
    await consumer.start()
    try:
        await asyncio.wait_for(done.wait(), 10)
        info = await js.consumer_info(stream, "pull-test")
        for _ in range(100):  # the last acks on their way
            if info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.05)
            info = await js.consumer_info(stream, "pull-test")
    finally:
        await consumer.stop()
    # in stream order; the failed one again after its ack wait (a busy machine may deliver an
    # acked one again too: delivery is at least once)
    assert seen[:5] == ["m0", "m1", "m2", "m3", "m4"]
    assert (info.config.ack_wait, info.config.max_deliver) == (1, -1)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_an_unordered_consumer_handles_a_batch_at_once(nats_client, namespace, streams):
    """`ordered=False`: every message of a fetched batch is in its handler at the same time
    (here each waits for all five to have arrived, which one at a time would never see)."""
    js = nats_client.jetstream()
    for i in range(5):
        await js.publish(namespace.order("7", "paid"), f"m{i}".encode())
    inside: set[str] = set()
    everyone = asyncio.Event()

    async def handle(msg: Msg) -> None:
        inside.add(msg.data.decode())
        if len(inside) == 5:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), 5)
        await msg.ack()

    consumer = PullConsumer(
        lambda: js,
        handle,
        stream=namespace.stream_name("ORDERS"),
        subject=namespace.order("*", "*"),
        durable="pull-unordered",
        config=ConsumerConfig(ack_wait=30),
        batch=10,
        fetch_timeout_s=0.5,
        ordered=False,
    )
    await consumer.start()
    try:
        await asyncio.wait_for(everyone.wait(), 10)
    finally:
        await consumer.stop()
    assert inside == {f"m{i}" for i in range(5)}


async def test_stopping_lets_the_batch_in_hand_finish(nats_client, namespace, streams):
    """A rolling restart: `stop` while a handler is at work waits for it (its message is
    acked, not left to come back after the ack wait), then fetches nothing more."""
    js = nats_client.jetstream()
    for i in range(3):
        await js.publish(namespace.order("7", "paid"), f"m{i}".encode())
    started = asyncio.Event()
    handled: list[str] = []

    async def handle(msg: Msg) -> None:
        started.set()
        await asyncio.sleep(0.3)
        await msg.ack()
        handled.append(msg.data.decode())

    consumer = PullConsumer(
        lambda: js,
        handle,
        stream=namespace.stream_name("ORDERS"),
        subject=namespace.order("*", "*"),
        durable="pull-graceful",
        config=ConsumerConfig(ack_wait=30),
        batch=10,
        fetch_timeout_s=0.5,
        graceful_timeout_s=5,
    )
    await consumer.start()
    await asyncio.wait_for(started.wait(), 10)
    await consumer.stop()
    assert handled == ["m0", "m1", "m2"]
    await nats_client.flush()  # the acks are on the wire (the consumer uses this connection)
    for _ in range(100):  # the server takes in acks apart from its API requests
        info = await js.consumer_info(namespace.stream_name("ORDERS"), "pull-graceful")
        if info.num_ack_pending == 0:
            break
        await asyncio.sleep(0.05)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_a_durable_that_cannot_be_bound_at_start_is_bound_later(nats_client, namespace):
    """Fault: JetStream does not answer for the durable at start (here its stream is not
    there yet; in a NATS cluster, a leader being elected). `start` returns all the same, the
    loop keeps trying, and consumes once the durable can be bound: no service stands idle
    after a start that came at the wrong moment."""
    js = nats_client.jetstream()
    stream = namespace.stream_name("LATE")
    subject = f"{namespace.prefix}.late.>"
    got = asyncio.Event()

    async def handle(msg: Msg) -> None:
        await msg.ack()
        got.set()

    consumer = PullConsumer(
        lambda: js,
        handle,
        stream=stream,
        subject=subject,
        durable="pull-late",
        config=ConsumerConfig(ack_wait=30),
        fetch_timeout_s=0.5,
        retry_delay_s=0.1,
    )
    await consumer.start()
    try:
        await js.add_stream(name=stream, subjects=[subject])
        await js.publish(f"{namespace.prefix}.late.x", b"m0")
        await asyncio.wait_for(got.wait(), 10)
    finally:
        await consumer.stop()
        await js.delete_stream(stream)
