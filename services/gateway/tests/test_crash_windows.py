"""Crash windows of create and cancel: the ORDERS stream and Redis agree whatever happens
between the Redis write, the publish and the reply, also after `rebuild-orders`.

The process test runs the real gateway (`python -m autopay_gateway`) against this test's NATS
and Redis and kills it at a named point (`AUTOPAY_TEST_CRASH_POINT`, see `faults.py`). The lost
PubAck tests run the app in-process, its publisher wrapped so that a publish really lands in
JetStream and then raises, as a timed-out request whose message arrived does.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from autopay_contracts import OrderCreated
from autopay_gateway.republish import Republisher
from autopay_runtime.publishing import PublishFailed
from autopay_store.accounts import Accounts
from autopay_store.keys import Keys
from autopay_store.orders import OrderBook
from autopay_store.rebuild import rebuild_orders
from autopay_store.secrets import SecretBox
from autopay_testing.jetstream import stored
from autopay_testing.servers import free_port
from autopay_testing.waiting import eventually_async

from .conftest import CARD, gateway_process, ready

BODY = {"amount": 50037, **CARD}


def order_events(nats_client, namespace, order_id: str):
    async def read() -> list[str]:
        events = await stored(nats_client, namespace.stream_name("ORDERS"))
        return [e["type"] for e in events if e["order"]["order_id"] == order_id]

    return read


async def rebuilt_elsewhere(nats_client, namespace, redis_client, redis_prefix, order_id: str):
    """The order as `rebuild-orders` writes it into an empty Redis (the streams alone)."""
    book = OrderBook(redis_client, Keys(redis_prefix + "-rebuilt"))
    await rebuild_orders(nats_client.jetstream(), namespace, book)
    return await book.get(order_id)


# --- a real gateway process, killed ---------------------------------------------------------


@pytest.mark.parametrize(
    ("crash_point", "stream_before_restart"),
    [
        ("cancel-after-write", ["order.created"]),
        ("cancel-after-publish", ["order.created", "order.cancelled"]),
    ],
)
async def test_gateway_killed_between_the_cancel_write_and_its_publish(
    settings,
    streams,
    nats_client,
    namespace,
    redis_client,
    redis_prefix,
    secret_key,
    crash_point,
    stream_before_restart,
):
    """Survives: gateway killed (SIGKILL) between the Redis write of a cancel and the publish
    of `order.cancelled` (and, second case, after the PubAck but before the reply and the
    outbox removal). The cancel's outbox entry outlives the process; the restarted gateway
    publishes the event (a duplicate in the second case), so the stream, Redis and a rebuild
    from the streams all say `cancelled` (before: the stream never heard of the cancel and a
    rebuild revived the order as payable)."""
    accounts = Accounts(redis_client, Keys(redis_prefix), SecretBox(secret_key))
    shop = await accounts.create_merchant("Shop", now=datetime.now(UTC))
    await accounts.add_card(shop.merchant.merchant_id, **CARD)
    port = free_port()
    headers = {"x-api-key": shop.api_key}
    events = order_events(nats_client, namespace, "10001")
    book = OrderBook(redis_client, Keys(redis_prefix))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        with gateway_process(settings, port, AUTOPAY_TEST_CRASH_POINT=crash_point) as gw:
            await ready(client, gw)
            created = await client.post("/api/create-payment", json=BODY, headers=headers)
            assert created.status_code == 200 and created.json()["order_id"] == "10001"
            with pytest.raises(httpx.TransportError):  # killed before it could answer
                await client.post(
                    "/api/cancel-payment", json={"order_id": "10001"}, headers=headers
                )
            assert gw.wait(10) == -9
        # The window is real: Redis says cancelled, the stream may only know of the create.
        assert (await book.get("10001")).status == "cancelled"
        assert await events() == stream_before_restart
        assert await redis_client.zcard(Keys(redis_prefix).outbox) == 1

        with gateway_process(settings, port) as gw:
            await ready(client, gw)
            await eventually_async(
                lambda: _empty(redis_client, Keys(redis_prefix).outbox), what="outbox emptied"
            )
            checked = await client.post(
                "/api/check-payment", json={"order_id": "10001"}, headers=headers
            )
            again = await client.post(
                "/api/cancel-payment", json={"order_id": "10001"}, headers=headers
            )
    assert checked.json()["status"] == "cancelled"
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert await events() == ["order.created", "order.cancelled"]  # the retry was a duplicate

    report = await rebuild_orders(nats_client.jetstream(), namespace, book)  # Redis kept
    assert report.orders.get("waiting", 0) == 0
    assert (await book.get("10001")).status == "cancelled"
    lost = await rebuilt_elsewhere(nats_client, namespace, redis_client, redis_prefix, "10001")
    assert lost is not None and lost.status == "cancelled"  # Redis lost: the streams say it


async def test_gateway_killed_between_the_create_write_and_its_publish(
    settings, streams, nats_client, namespace, redis_client, redis_prefix, secret_key
):
    """Survives: gateway killed (SIGKILL) after storing an order in Redis and before
    publishing `order.created`. The restarted gateway publishes it from the outbox, so the
    order the book holds (and may match) is in the stream too, and a rebuild finds it."""
    accounts = Accounts(redis_client, Keys(redis_prefix), SecretBox(secret_key))
    shop = await accounts.create_merchant("Shop", now=datetime.now(UTC))
    await accounts.add_card(shop.merchant.merchant_id, **CARD)
    port = free_port()
    headers = {"x-api-key": shop.api_key}
    events = order_events(nats_client, namespace, "10001")
    book = OrderBook(redis_client, Keys(redis_prefix))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        with gateway_process(settings, port, AUTOPAY_TEST_CRASH_POINT="create-after-write") as gw:
            await ready(client, gw)
            with pytest.raises(httpx.TransportError):
                await client.post("/api/create-payment", json=BODY, headers=headers)
            assert gw.wait(10) == -9
        assert (await book.get("10001")).status == "waiting"
        assert await events() == []
        with gateway_process(settings, port) as gw:
            await ready(client, gw)
            await eventually_async(
                lambda: _has(events, "order.created"), what="order.created published"
            )
            await eventually_async(
                lambda: _empty(redis_client, Keys(redis_prefix).outbox), what="outbox emptied"
            )
    assert await events() == ["order.created"]
    lost = await rebuilt_elsewhere(nats_client, namespace, redis_client, redis_prefix, "10001")
    assert lost is not None and lost.status == "waiting"
    assert lost.order == (await book.get("10001")).order


@pytest.mark.parametrize("crash_point", ["create-after-write", "create-after-publish"])
async def test_a_retry_after_a_create_that_died_gets_its_order_not_a_second_one(
    crash_point, settings, streams, nats_client, namespace, redis_client, redis_prefix, secret_key
):
    """Survives: gateway killed (SIGKILL) after writing an order and before answering a create
    made with an `Idempotency-Key`. The key was bound to the order's id before the write, so the
    client's retry (once the dead call's 2 s lease is over) answers with that order: the
    merchant's customer never sees two amounts, the quota counts one payment."""
    accounts = Accounts(redis_client, Keys(redis_prefix), SecretBox(secret_key))
    shop = await accounts.create_merchant("Shop", now=datetime.now(UTC))
    await accounts.add_card(shop.merchant.merchant_id, **CARD)
    port = free_port()
    headers = {"x-api-key": shop.api_key, "idempotency-key": "create-1"}
    body = {"amount_base": 500, **CARD}
    book = OrderBook(redis_client, Keys(redis_prefix))
    lease = {"AUTOPAY_IDEMPOTENCY_PENDING_SECONDS": "2"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        with gateway_process(settings, port, AUTOPAY_TEST_CRASH_POINT=crash_point, **lease) as gw:
            await ready(client, gw)
            with pytest.raises(httpx.TransportError):
                await client.post("/api/create-payment", json=body, headers=headers)
            assert gw.wait(10) == -9
        made = await book.get("10001")
        assert made is not None and made.status == "waiting"
        with gateway_process(settings, port, **lease) as gw:
            await ready(client, gw)
            answers = []
            for _ in range(40):  # the client's retries: 409 while the dead call's lease holds
                response = await client.post("/api/create-payment", json=body, headers=headers)
                answers.append(response.status_code)
                if response.status_code != 409:
                    break
                assert "Idempotency-Key" in response.json()["detail"]
                await asyncio.sleep(0.25)
            assert response.status_code == 200, answers
            assert response.json() == {
                "success": True,
                "order_id": "10001",
                "amount": made.order.amount_tiyin // 100,
            }
            replay = await client.post("/api/create-payment", json=body, headers=headers)
            assert replay.json() == response.json()
            assert replay.headers.get("idempotent-replayed") == "true"
            await eventually_async(
                lambda: _has(order_events(nats_client, namespace, "10001"), "order.created"),
                what="order.created published",
            )
    assert await book.get("10002") is None
    merchant = await accounts.get_merchant(shop.merchant.merchant_id)
    assert merchant is not None and merchant.payments_used == 1


async def _has(events, event_type: str) -> bool:
    return event_type in await events()


# --- lost PubAcks, in-process ---------------------------------------------------------------


def lose_acks(gw, times: int) -> list[str]:
    """The gateway's `order.created` publishes land in JetStream, but the first `times` of
    them raise as a request whose PubAck never came back (a timeout)."""
    publisher = gw.app.state.gateway.publisher
    real = publisher.publish
    lost: list[str] = []

    async def publish(event):
        ack = await real(event)
        if isinstance(event, OrderCreated) and len(lost) < times:
            lost.append(event.event_id)
            raise PublishFailed(f"{event.event_type}: TimeoutError: no PubAck (lost)")
        return ack

    publisher.publish = publish
    return lost


async def test_a_create_whose_puback_was_lost_is_created_not_503(
    settings, start_gateway, streams, nats_client, namespace, redis_client, redis_prefix
):
    """Survives: `order.created` stored by JetStream but its PubAck lost (the publish timed
    out). The same `Nats-Msg-Id` is published again and acknowledged as a duplicate, so the
    merchant gets the order (before: voided in Redis and 503, while the stream had it)."""
    async with start_gateway(settings) as gw:
        shop = await gw.merchant()
        lost = lose_acks(gw, times=1)
        response = await gw.post("/api/create-payment", shop.api_key, BODY)
        assert lost, "the fault was not injected"
        assert response.status_code == 200 and response.json()["order_id"] == "10001"
        assert (await gw.orders.get("10001")).status == "waiting"
        assert await order_events(nats_client, namespace, "10001")() == ["order.created"]
        await eventually_async(  # the outbox entry goes once acknowledged
            lambda: _empty(redis_client, Keys(redis_prefix).outbox), what="outbox emptied"
        )
    rebuilt = await rebuilt_elsewhere(nats_client, namespace, redis_client, redis_prefix, "10001")
    assert rebuilt is not None and rebuilt.status == "waiting"


async def test_a_create_never_acknowledged_ends_cancelled_everywhere(
    settings, start_gateway, streams, nats_client, namespace, redis_client, redis_prefix
):
    """Survives: every publish of `order.created` times out although one landed. The outcome
    is unknown, so the order is not voided (a rebuild would revive it from the stream) but
    cancelled and the request gets 503; the outbox then publishes `order.cancelled`, and the
    stream, Redis and a rebuild agree: cancelled, never payable."""
    settings = settings.model_copy(update={"publish_attempts": 2})
    async with start_gateway(settings) as gw:
        shop = await gw.merchant()
        lose_acks(gw, times=2)
        response = await gw.post("/api/create-payment", shop.api_key, BODY)
        assert response.status_code == 503
        assert (await gw.orders.get("10001")).status == "cancelled"
        assert (await gw.accounts.get_merchant(shop.merchant.merchant_id)).payments_used == 0
        sweep = Republisher(
            OrderBook(redis_client, Keys(redis_prefix)),
            gw.app.state.gateway.publisher,
            grace_s=0.0,
            interval_s=1.0,
            attempts=1,
        )
        await asyncio.sleep(0.01)  # the entries are older than a grace of 0
        assert await sweep.run_once() == 2  # order.created (a duplicate) and order.cancelled
    events = order_events(nats_client, namespace, "10001")
    assert await events() == ["order.created", "order.cancelled"]
    assert await redis_client.zcard(Keys(redis_prefix).outbox) == 0
    rebuilt = await rebuilt_elsewhere(nats_client, namespace, redis_client, redis_prefix, "10001")
    assert rebuilt is not None and rebuilt.status == "cancelled"


async def _empty(redis_client, key: str) -> bool:
    return await redis_client.zcard(key) == 0
