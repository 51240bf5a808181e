"""The notifier in-process against real NATS JetStream, Redis and local HTTP receivers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from standardwebhooks import Webhook

from autopay_contracts import (
    Order,
    OrderCancelled,
    OrderCreated,
    OrderExpired,
    OrderPaid,
    parse_event,
)
from autopay_notifier.bootstrap import build_app
from autopay_notifier.settings import NotifierSettings
from autopay_store.accounts import Accounts
from autopay_store.deliveries import DeliveryKeys, DeliveryStore
from autopay_store.keys import Keys
from autopay_store.secrets import SecretBox

from .receiver import BlackHole, Receiver, eventually

SECRET_KEY = SecretBox.generate_key()
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def settings(nats_url, redis_url, namespace, redis_prefix) -> NotifierSettings:
    return NotifierSettings(
        nats_url=nats_url,
        redis_url=redis_url,
        namespace=namespace.root,
        redis_prefix=redis_prefix,
        secret_keys=SECRET_KEY,
        allow_http_loopback=True,
        retry_schedule_s=[0.2, 0.2, 0.2],
        retry_jitter=0.0,
        overload_floor_s=0.0,
        poll_interval_s=0.05,
        total_timeout_s=3.0,
        shutdown_grace_s=0.5,
    )


@pytest.fixture
def accounts(redis_client, redis_prefix) -> Accounts:
    return Accounts(redis_client, Keys(redis_prefix), SecretBox(SECRET_KEY))


@pytest.fixture
def store(redis_client, redis_prefix) -> DeliveryStore:
    return DeliveryStore(redis_client, DeliveryKeys(redis_prefix))


@asynccontextmanager
async def running(settings: NotifierSettings) -> AsyncIterator:
    app = build_app(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def notifier(settings, streams, redis_client) -> AsyncIterator:
    async with running(settings) as app:
        yield app


def make_order(merchant_id: str, order_id: str, url: str | None, **kw) -> Order:
    return Order(
        order_id=order_id,
        merchant_id=merchant_id,
        mailbox_id="mbx1",
        gmail="karta@gmail.com",
        card_last4="6412",
        amount_tiyin=5_003_700,
        created_at=NOW - timedelta(minutes=1),
        expires_at=NOW + timedelta(minutes=4),
        client_user_id="123456789",
        client_user_data={"plan": "premium"},
        webhook_url=url,
        **kw,
    )


def paid(order: Order) -> OrderPaid:
    return OrderPaid(order=order, credit_id="c-" + order.order_id, paid_at=NOW)


async def publish(nats_client, namespace, event, msg_id: str | None = None) -> None:
    headers = event.headers()
    if msg_id is not None:
        headers["Nats-Msg-Id"] = msg_id
    await nats_client.jetstream().publish(
        event.subject(namespace), event.to_bytes(), headers=headers
    )


def webhook_events(nats_client, namespace) -> Callable:
    """An async function returning every event in this test's WEBHOOKS stream, in order."""
    js = nats_client.jetstream()
    stream = namespace.stream_name("WEBHOOKS")

    async def read() -> list:
        info = await js.stream_info(stream)
        return [
            parse_event((await js.get_msg(stream, seq)).data)
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
            if info.state.messages
        ]

    return read


async def consumed(nats_client, namespace, count: int) -> None:
    """Wait until the notifier's durable consumer has acked `count` order messages."""
    js = nats_client.jetstream()

    async def done() -> bool:
        info = await js.consumer_info(namespace.stream_name("ORDERS"), "notifier")
        return info.ack_floor.stream_seq >= count and info.num_ack_pending == 0

    await eventually(done)


async def test_paid_order_sends_the_seed_payload_signed_with_every_valid_secret(
    notifier, nats_client, namespace, accounts, store
):
    merchant = await accounts.create_merchant("shop", now=NOW)
    mid = merchant.merchant.merchant_id
    new_secret = await accounts.rotate_webhook_secret(mid, datetime.now(UTC))
    events = webhook_events(nats_client, namespace)
    async with Receiver() as receiver:
        event = paid(make_order(mid, "10001", receiver.url()))
        await publish(nats_client, namespace, event)
        await eventually(lambda: receiver.requests)
        delivered = await eventually(events)

    request = receiver.requests[0]
    assert json.loads(request.body) == {
        "order_id": "10001",
        "status": "paid",
        "amount": 50037,
        "card_last4": "6412",
        "gmail": "karta@gmail.com",
        "client_user_id": "123456789",
        "client_user_data": {"plan": "premium"},
        "paid_at": NOW.astimezone(timedelta_tz(5)).strftime("%Y-%m-%dT%H:%M:%S"),
    }
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("AutoPay-Webhooks")
    assert request.headers["webhook-id"] == event.event_id
    for secret in (merchant.webhook_secret, new_secret):  # previous one valid for 24 h
        assert Webhook(secret).verify(request.body, request.headers)["order_id"] == "10001"

    assert [type(e).__name__ for e in delivered] == ["WebhookDelivered"]
    assert delivered[0].delivery_id == event.event_id and delivered[0].status_code == 200
    log = await store.log("10001")
    assert [(e["attempt"], e["outcome"], e["status_code"]) for e in log] == [(1, "delivered", 200)]
    assert "secret" not in json.dumps(log)
    assert (await store.delivery(event.event_id))["state"] == "delivered"


def timedelta_tz(hours: int):
    from datetime import timezone

    return timezone(timedelta(hours=hours))


async def test_500_then_200_retries_with_the_same_webhook_id(
    notifier, nats_client, namespace, accounts, store
):
    merchant = await accounts.create_merchant("shop", now=NOW)
    events = webhook_events(nats_client, namespace)
    async with Receiver(statuses=[500, 200]) as receiver:
        event = paid(make_order(merchant.merchant.merchant_id, "10002", receiver.url()))
        await publish(nats_client, namespace, event)
        seen = await eventually(
            lambda: _done(events, "WebhookDelivered"),
        )

    assert [(type(e).__name__, e.attempt, e.status_code) for e in seen] == [
        ("WebhookFailed", 1, 500),
        ("WebhookDelivered", 2, 200),
    ]
    assert seen[0].next_attempt_at is not None and "HTTP 500" in seen[0].error
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {event.event_id} and len(receiver.requests) == 2
    for r in receiver.requests:
        assert Webhook(merchant.webhook_secret).verify(r.body, r.headers)
    log = await store.log("10002")
    assert [e["outcome"] for e in log] == ["retry", "delivered"]


async def _done(events, last_type: str) -> list | None:
    seen = await events()
    return seen if seen and type(seen[-1]).__name__ == last_type else None


async def test_410_stops_delivery(notifier, nats_client, namespace, accounts, store, redis_client):
    merchant = await accounts.create_merchant("shop", now=NOW)
    events = webhook_events(nats_client, namespace)
    async with Receiver(statuses=[410, 200]) as receiver:
        event = paid(make_order(merchant.merchant.merchant_id, "10003", receiver.url()))
        await publish(nats_client, namespace, event)
        seen = await eventually(lambda: _done(events, "WebhookExhausted"))
        assert len(receiver.requests) == 1
    assert [(type(e).__name__, e.status_code) for e in seen] == [("WebhookExhausted", 410)]
    assert "410" in seen[0].error
    assert (await store.delivery(event.event_id))["state"] == "exhausted"
    assert await store.pending_count() == 0  # nothing left scheduled: no further retries


async def test_refused_destination_is_exhausted_without_any_attempt(
    notifier, nats_client, namespace, accounts, store
):
    merchant = await accounts.create_merchant("shop", now=NOW)
    events = webhook_events(nats_client, namespace)
    event = paid(make_order(merchant.merchant.merchant_id, "10004", "https://10.0.0.8/hook"))
    await publish(nats_client, namespace, event)
    seen = await eventually(lambda: _done(events, "WebhookExhausted"))
    assert len(seen) == 1 and seen[0].status_code is None
    assert "non-public" in seen[0].error
    assert await store.pending_count() == 0


async def test_black_holed_endpoint_does_not_delay_another_merchant(
    settings, streams, redis_client, nats_client, namespace, accounts
):
    # Room for only three claims in the whole process: the black-holed endpoint may take two
    # (one attempt, one queued), its third is handed back to the schedule, one slot is left.
    settings = settings.model_copy(
        update={"max_outstanding": 3, "per_host_in_flight": 1, "per_host_queue": 1}
    )
    slow = await accounts.create_merchant("slow", now=NOW)
    fast = await accounts.create_merchant("fast", now=NOW)
    events = webhook_events(nats_client, namespace)
    async with BlackHole() as hole, Receiver() as receiver, running(settings):
        for n in range(3):
            order = make_order(slow.merchant.merchant_id, f"2000{n}", hole.url())
            await publish(nats_client, namespace, paid(order))
        await eventually(lambda: hole.connections)
        await publish(
            nats_client,
            namespace,
            paid(make_order(fast.merchant.merchant_id, "30000", receiver.url())),
        )
        seen = await eventually(lambda: _first_for(events, fast.merchant.merchant_id), timeout=10)
        # The fast merchant's webhook is delivered while every black-holed attempt is still
        # hanging: nothing about the slow merchant has been decided yet.
        assert [(type(e).__name__, e.merchant_id) for e in seen] == [
            ("WebhookDelivered", fast.merchant.merchant_id)
        ]
        assert len(receiver.requests) == 1


async def _first_for(events, merchant_id: str) -> list | None:
    seen = await events()
    return seen if any(e.merchant_id == merchant_id for e in seen) else None


async def test_redelivered_order_event_sends_no_second_webhook(
    notifier, nats_client, namespace, accounts, store
):
    merchant = await accounts.create_merchant("shop", now=NOW)
    events = webhook_events(nats_client, namespace)
    async with Receiver() as receiver:
        event = paid(make_order(merchant.merchant.merchant_id, "10005", receiver.url()))
        await publish(nats_client, namespace, event)
        await eventually(lambda: _done(events, "WebhookDelivered"))
        # The same fact arrives again (as after a producer retry past the dedup window).
        await publish(nats_client, namespace, event, msg_id="replayed-copy")
        await consumed(nats_client, namespace, 2)
        assert len(receiver.requests) == 1
    assert [type(e).__name__ for e in await events()] == ["WebhookDelivered"]
    assert len(await store.log("10005")) == 1


async def test_an_order_created_is_acked_and_sends_nothing(
    notifier, nats_client, namespace, accounts
):
    """`order.created` (one per order) is acked by its subject alone and makes no webhook; the
    paid event after it gets its one."""
    merchant = await accounts.create_merchant("shop", now=NOW)
    mid = merchant.merchant.merchant_id
    async with Receiver() as receiver:
        order = make_order(mid, "7", receiver.url())
        await publish(nats_client, namespace, OrderCreated(order=order))
        await publish(nats_client, namespace, paid(order))
        await consumed(nats_client, namespace, 2)
        await eventually(lambda: len(receiver.requests) >= 1)
    assert [json.loads(r.body)["status"] for r in receiver.requests] == ["paid"]


async def test_only_opted_in_events_and_orders_with_a_url_are_sent(
    notifier, nats_client, namespace, accounts
):
    merchant = await accounts.create_merchant("shop", now=NOW)
    mid = merchant.merchant.merchant_id
    async with Receiver() as receiver:
        url = receiver.url()
        opted = ("paid", "cancelled")
        await publish(
            nats_client, namespace, OrderExpired(order=make_order(mid, "1", url), expired_at=NOW)
        )
        await publish(nats_client, namespace, paid(make_order(mid, "2", None)))
        await publish(
            nats_client,
            namespace,
            OrderCancelled(order=make_order(mid, "3", url, notify_events=opted), cancelled_at=NOW),
        )
        await publish(
            nats_client,
            namespace,
            OrderExpired(
                order=make_order(mid, "4", url, notify_events=("paid", "expired")), expired_at=NOW
            ),
        )
        await consumed(nats_client, namespace, 4)
        await eventually(lambda: len(receiver.requests) >= 2)
    bodies = sorted((json.loads(r.body) for r in receiver.requests), key=lambda b: b["order_id"])
    assert [(b["order_id"], b["status"], b["paid_at"]) for b in bodies] == [
        ("3", "cancelled", None),
        ("4", "expired", None),
    ]


async def test_a_scheduled_retry_survives_a_notifier_restart(
    settings, streams, redis_client, nats_client, namespace, accounts
):
    settings = settings.model_copy(update={"retry_schedule_s": [0.5, 0.5]})
    merchant = await accounts.create_merchant("shop", now=NOW)
    events = webhook_events(nats_client, namespace)
    async with Receiver(statuses=[503, 200]) as receiver:
        event = paid(make_order(merchant.merchant.merchant_id, "10006", receiver.url()))
        async with running(settings):
            await publish(nats_client, namespace, event)
            await eventually(lambda: _done(events, "WebhookFailed"))
        assert len(receiver.requests) == 1  # stopped before the retry was due
        async with running(settings):
            seen = await eventually(lambda: _done(events, "WebhookDelivered"))
    assert [(type(e).__name__, e.attempt) for e in seen] == [
        ("WebhookFailed", 1),
        ("WebhookDelivered", 2),
    ]
    assert [r.headers["webhook-id"] for r in receiver.requests] == [event.event_id] * 2


async def test_redis_pool_waits_for_a_connection_instead_of_failing(settings):
    import asyncio

    from autopay_notifier.bootstrap import notifier_redis

    redis = notifier_redis(settings.model_copy(update={"redis_max_connections": 2}))
    try:
        key = settings.redis_prefix + ":pool"
        # Single commands share pipelines; transactions take a pooled connection each.
        results = await asyncio.gather(*(redis.hincrby(key, "n", 1) for _ in range(50)))
        assert sorted(results) == list(range(1, 51))

        async def in_transaction() -> int:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(key, "t", 1)
                [n] = await pipe.execute()
                return n

        counted = await asyncio.gather(*(in_transaction() for _ in range(20)))
        assert sorted(counted) == list(range(1, 21))
    finally:
        await redis.aclose()


async def test_new_delivery_to_a_full_lane_is_recorded_due_later_not_leased(
    redis_client, accounts, store
):
    from autopay_notifier.adapters.webhook_client import WebhookSender
    from autopay_notifier.domain import RetryPolicy
    from autopay_notifier.service import Limits, Notifier
    from autopay_notifier.ssrf import GuardPolicy

    class Published(list):
        async def publish(self, event) -> None:
            self.append(event)

    guard = GuardPolicy(allow_loopback=True)
    published = Published()
    notifier = Notifier(
        store=store,
        sender=WebhookSender(guard, total_timeout_s=5.0),
        secrets_for=accounts.webhook_secrets,
        publisher=published,
        policy=RetryPolicy(),
        guard=guard,
        limits=Limits(per_host_in_flight=1, per_host_queue=1, busy_defer_s=5.0),
        user_agent="test",
    )
    merchant = await accounts.create_merchant("slow", now=NOW)
    async with BlackHole() as hole:
        try:
            orders = [
                make_order(merchant.merchant.merchant_id, f"4000{n}", hole.url()) for n in range(3)
            ]
            for order in orders:
                assert await notifier.accept(paid(order)) == "scheduled"
            await eventually(lambda: hole.connections)
            third = paid(orders[2]).event_id
            due = await redis_client.zscore(store.keys.due, third)
            assert due >= datetime.now(UTC).timestamp() + 4  # the drain delay, not now
            assert "lease" not in await redis_client.hgetall(store.keys.delivery(third))
            assert third not in notifier._held and notifier._outstanding == 2
        finally:
            await notifier.stop(0.1)
            await notifier.sender.aclose()
    assert published == []  # the black hole never answered: nothing decided


async def test_undecodable_order_event_is_dropped_and_the_next_one_delivered(
    notifier, nats_client, namespace, accounts
):
    merchant = await accounts.create_merchant("shop", now=NOW)
    mid = merchant.merchant.merchant_id
    await nats_client.jetstream().publish(namespace.order(mid, "paid"), b"{not json")
    async with Receiver() as receiver:
        await publish(nats_client, namespace, paid(make_order(mid, "50001", receiver.url())))
        await eventually(lambda: receiver.requests)
    await consumed(nats_client, namespace, 2)  # the bad one is settled, not left pending
    assert len(receiver.requests) == 1


async def test_an_attempt_that_raises_is_counted_and_ends_exhausted_on_schedule(
    notifier, nats_client, namespace, accounts, store
):
    """Survives: an exception inside a webhook attempt (a bug, an error class the HTTP client
    does not map, here a TLS failure nobody catches). Each one is a failed attempt with its
    error, retried on the schedule ([0.2, 0.2, 0.2]: four attempts), then `webhook.exhausted`;
    before, the attempt was never recorded and came back after every lease, forever."""

    class UnmappedTlsFailure(Exception):
        pass

    calls: list[str] = []

    async def send(url: str, body: bytes, headers: dict[str, str]):
        calls.append(headers["webhook-id"])
        raise UnmappedTlsFailure("handshake broke in an unexpected way")

    notifier.state_notifier.sender.send = send
    merchant = await accounts.create_merchant("shop", now=NOW)
    events = webhook_events(nats_client, namespace)
    event = paid(make_order(merchant.merchant.merchant_id, "60001", "http://127.0.0.1:9/hook"))
    await publish(nats_client, namespace, event)
    seen = await eventually(lambda: _done(events, "WebhookExhausted"))

    assert [(type(e).__name__, e.attempt) for e in seen] == [
        ("WebhookFailed", 1),
        ("WebhookFailed", 2),
        ("WebhookFailed", 3),
        ("WebhookExhausted", 4),
    ]
    assert all("UnmappedTlsFailure" in e.error for e in seen)
    assert all(e.next_attempt_at is not None for e in seen[:3])
    assert calls == [event.event_id] * 4
    delivery = await store.delivery(event.event_id)
    assert delivery["state"] == "exhausted" and delivery["attempts"] == "4"
    log = await store.log("60001")
    assert [e["outcome"] for e in log] == ["retry", "retry", "retry", "exhausted"]
    assert await store.pending_count() == 0


async def test_a_new_consumer_starts_inside_the_delivery_record_retention(
    settings, streams, redis_client, nats_client, namespace, accounts, store
):
    """Survives: a fresh notifier (new durable consumer) on an ORDERS stream that keeps paid
    events longer (90 days) than the delivery records that say a webhook was sent (30 days).
    The consumer starts `delivery_retention_s - consumer_start_margin_s` ago, so an event older
    than that is never given to it (its webhook is not sent again), a younger one is."""
    import asyncio

    js = nats_client.jetstream()
    orders = namespace.stream_name("ORDERS")
    merchant = await accounts.create_merchant("shop", now=NOW)
    mid = merchant.merchant.merchant_id
    async with Receiver() as receiver:
        old = paid(make_order(mid, "70001", receiver.url()))
        young = paid(make_order(mid, "70002", receiver.url()))
        await publish(nats_client, namespace, old)
        old_at = (await js.get_msg(orders, 1)).time
        await asyncio.sleep(2.0)  # two stored times far enough apart to start between them
        await publish(nats_client, namespace, young)
        young_at = (await js.get_msg(orders, 2)).time
        start = old_at + (young_at - old_at) / 2
        # "Old" is relative: a retention ending between the two events makes the first one
        # older than any delivery record could be.
        lookback = (datetime.now(UTC) - start).total_seconds()
        retention = int(lookback) + 3600
        fresh = settings.model_copy(
            update={
                "delivery_retention_s": retention,
                "consumer_start_margin_s": retention - lookback,
            }
        )
        async with running(fresh):
            info = await js.consumer_info(orders, "notifier")
            await eventually(lambda: receiver.requests)
            await eventually(lambda: _acked(js, orders, 2))
            # the receiver's 200 comes before the notifier records it: stop only after that
            await eventually(lambda: _finished(store, young.event_id))
        # A restarted notifier asks for a later start; the existing durable is bound as it is
        # (nats-py's pull_subscribe creates a durable only when it does not exist).
        later = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=datetime.now(UTC)
        )
        await js.pull_subscribe(info.config.filter_subject, "notifier", orders, config=later)
        again = await js.consumer_info(orders, "notifier")

    assert info.config.deliver_policy == "by_start_time"
    assert old_at < info.config.opt_start_time < young_at
    assert again.config.opt_start_time == info.config.opt_start_time
    assert [json.loads(r.body)["order_id"] for r in receiver.requests] == ["70002"]
    assert await store.delivery(old.event_id) == {}
    assert (await store.delivery(young.event_id))["state"] == "delivered"


async def _finished(store, delivery_id: str) -> bool:
    return "state" in await store.delivery(delivery_id)


async def _acked(js, stream: str, seq: int) -> bool:
    info = await js.consumer_info(stream, "notifier")
    return info.delivered.stream_seq >= seq and info.num_ack_pending == 0


async def test_the_backlog_gauges_report_the_shared_schedule(store, redis_client):
    """`autopay_notifier_scheduled_deliveries` counts the schedule; the backlog age is how long
    the earliest delivery has been due without a claim (a future score is not overdue)."""
    from prometheus_client import REGISTRY

    from autopay_notifier import metrics

    def gauges() -> tuple[float | None, float | None]:
        return (
            REGISTRY.get_sample_value("autopay_notifier_scheduled_deliveries"),
            REGISTRY.get_sample_value("autopay_notifier_backlog_age_seconds"),
        )

    assert await store.backlog() == (0, None)
    metrics.observe_backlog(*await store.backlog(), now=2_000.0)
    assert gauges() == (0, 0)
    await redis_client.zadd(store.keys.due, {"later": 5_000.0, "overdue": 1_700.0})
    assert await store.backlog() == (2, 1_700.0)
    metrics.observe_backlog(*await store.backlog(), now=2_000.0)
    assert gauges() == (2, 300.0)
    metrics.observe_backlog(*await store.backlog(), now=1_000.0)  # nothing due yet
    assert gauges() == (2, 0)
