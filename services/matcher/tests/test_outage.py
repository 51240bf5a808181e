"""Money safety under Redis outages: a credit is retried for as long as Redis is gone or hung,
never dropped after a number of deliveries; the expiry scanner and the reconciler carry on
afterwards. Each test runs its own Redis server (never the session's shared one)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from autopay_contracts import CreditReceived
from autopay_contracts.streams import CREDITS, ORDERS
from autopay_matcher.bootstrap import build_app
from autopay_matcher.settings import MatcherSettings
from autopay_store.keys import Keys
from autopay_store.orders import OrderBook
from autopay_testing import builders
from autopay_testing.jetstream import publish_event, stored
from autopay_testing.servers import start_redis
from autopay_testing.waiting import eventually_async

OLD_MAX_DELIVER = 20
"""The delivery limit the matcher had: a credit was dropped after this many failures."""


class Clock:
    def __init__(self) -> None:
        self.at = builders.T0

    def __call__(self):
        return self.at


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class PrivateRedis:
    """A Redis of this test's own, with an append-only file, so it can be stopped, frozen and
    restarted on the same port without touching the session's shared server."""

    def __init__(self, workdir) -> None:
        self.server = start_redis(workdir=workdir, persistent=True)
        self.url = self.server.url

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        self.server = start_redis(
            workdir=self.server.workdir, port=self.server.port, persistent=True
        )

    def freeze(self) -> None:
        os.kill(self.server.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.server.process.poll() is None:
            os.kill(self.server.process.pid, signal.SIGCONT)


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path / "redis")
    try:
        yield redis
    finally:
        redis.thaw()
        redis.stop()


@pytest.fixture
def settings(nats_url, namespace, redis_prefix, private_redis) -> MatcherSettings:
    return MatcherSettings(
        nats_url=nats_url,
        redis_url=private_redis.url,
        namespace=namespace.root,
        redis_prefix=redis_prefix,
        expiry_scan_interval_seconds=0.05,
        retry_delay_seconds=0.05,
        retry_max_delay_seconds=0.2,
        decision_timeout_seconds=1.0,
        reconcile_interval_seconds=0.5,
        reconcile_min_age_seconds=0.0,
    )


async def create_orders(url: str, prefix: str, *orders) -> None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        book = OrderBook(client, Keys(prefix))
        for order in orders:
            await book.create(order)
    finally:
        await client.aclose()


async def order_status(url: str, prefix: str, order_id: str) -> str | None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        record = await OrderBook(client, Keys(prefix)).get(order_id)
        return record.status if record else None
    finally:
        await client.aclose()


async def paid_order_ids(nats_client, ns) -> set[str]:
    return {e["order"]["order_id"] for e in await stored(nats_client, ORDERS.name(ns), ".paid")}


async def test_credit_survives_redis_down_for_longer_than_the_old_delivery_limit(
    settings, private_redis, streams, nats_client, namespace, redis_prefix
):
    """Fault: Redis is down (connections refused) while a credit arrives, for longer than the
    old 20-delivery window. The credit is redelivered with backoff past 20 deliveries and pays
    its order once Redis is back; an order whose deadline passed during the outage is expired
    afterwards; while Redis is down the reconciler reports the credit's age without deciding
    it itself (the consumer holds it)."""
    clock = Clock()
    paying = builders.order("10001", at=builders.T0)
    expiring = builders.order(
        "10002", amount=7_000_000, at=builders.T0 - timedelta(minutes=4, seconds=30)
    )
    await create_orders(private_redis.url, redis_prefix, paying, expiring)
    app = build_app(settings, clock=clock)
    await app.start()
    deliveries_before = sample("autopay_matcher_credit_deliveries_sum")
    retries_before = sample("autopay_matcher_retries_total", cause="redis")
    try:
        private_redis.stop()
        started = time.monotonic()
        await publish_event(nats_client, namespace, CreditReceived(credit=builders.credit("c1")))
        clock.at = builders.T0 + timedelta(minutes=2)  # the second order is now overdue

        async def retried_past_the_old_limit() -> bool:
            retries = sample("autopay_matcher_retries_total", cause="redis") - retries_before
            return retries > OLD_MAX_DELIVER + 5

        await eventually_async(retried_past_the_old_limit, 30, "redeliveries past the old limit")
        age = sample("autopay_matcher_oldest_undecided_credit_age_seconds")
        assert await paid_order_ids(nats_client, namespace) == set()

        private_redis.restart()

        async def paid() -> bool:
            return await paid_order_ids(nats_client, namespace) == {"10001"}

        await eventually_async(paid, 30, "the order paid after the outage")
        outage_s = time.monotonic() - started
        deliveries = sample("autopay_matcher_credit_deliveries_sum") - deliveries_before
        assert deliveries > OLD_MAX_DELIVER, (deliveries, outage_s)

        async def expired() -> bool:
            return await order_status(private_redis.url, redis_prefix, "10002") == "expired"

        await eventually_async(expired, 30, "the overdue order expired after the outage")
        assert age > 0, "the reconciler reported the undecided credit during the outage"

        async def reconciled() -> bool:
            return sample("autopay_matcher_oldest_undecided_credit_age_seconds") == 0

        await eventually_async(reconciled, 30, "no credit without a decision")
        matched = await stored(nats_client, CREDITS.name(namespace), ".matched")
        assert [m["credit"]["credit_id"] for m in matched] == ["c1"]
    finally:
        await app.stop()


async def test_a_hung_redis_does_not_stall_the_consumer(
    settings, private_redis, streams, nats_client, namespace, redis_prefix
):
    """Fault: Redis hangs (SIGSTOP: connections accepted, nothing answered). Each batch gives up
    after the decision timeout and is nacked (cause `timeout`), so the loop keeps cycling
    instead of sitting on the batch past the ack wait; after SIGCONT the credit pays."""
    clock = Clock()
    await create_orders(private_redis.url, redis_prefix, builders.order("10001", at=builders.T0))
    app = build_app(settings, clock=clock)
    await app.start()
    before = sample("autopay_matcher_retries_total", cause="timeout")
    try:
        private_redis.freeze()
        await publish_event(nats_client, namespace, CreditReceived(credit=builders.credit("c1")))

        async def timed_out_three_times() -> bool:
            return sample("autopay_matcher_retries_total", cause="timeout") >= before + 3

        started = time.monotonic()
        await eventually_async(timed_out_three_times, 30, "three timed-out attempts")
        assert time.monotonic() - started < settings.ack_wait_seconds
        private_redis.thaw()

        async def paid() -> bool:
            return await paid_order_ids(nats_client, namespace) == {"10001"}

        await eventually_async(paid, 30, "the order paid after Redis resumed")
    finally:
        private_redis.thaw()
        await app.stop()
