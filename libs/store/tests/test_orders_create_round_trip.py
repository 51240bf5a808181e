"""`create` / `create_with_free_tail` send the locator, the deadline and the card script as one
pipeline: the script may be missing from Redis, and a failed global write undoes the order."""

from datetime import timedelta

import pytest
from redis.exceptions import ResponseError

from autopay_store.keys import Keys
from autopay_store.orders import OrderBook, OrderRecord
from autopay_testing.builders import MBX, T0, order


@pytest.fixture
def book(redis_client, redis_prefix) -> OrderBook:
    return OrderBook(redis_client, Keys(redis_prefix), quarantine_s=900)


async def test_create_writes_locator_and_deadline(book, redis_client):
    await book.create(order("10001"))
    assert await redis_client.get(book.keys.order_locator("10001")) == f"{MBX}:6412"
    assert await book.due(T0 + timedelta(minutes=6)) == ["10001"]
    assert await book.due(T0 + timedelta(minutes=4)) == []


async def test_create_loads_a_script_redis_does_not_know(book, redis_client):
    await redis_client.script_flush()
    created = await book.create(order("10001"))
    assert created == OrderRecord(order=order("10001"), status="waiting")
    await redis_client.script_flush()
    tail = await book.create_with_free_tail(order("10002"), 5_000_000, range(100, 300, 100))
    assert tail.order.amount_tiyin == 5_000_100
    assert (await book.get("10002")).status == "waiting"


@pytest.mark.parametrize("free_tail", [False, True])
async def test_a_failed_deadline_write_voids_the_created_order(book, redis_client, free_tail):
    await redis_client.set(book.keys.deadline_shard_of(MBX, "6412"), "not a zset")
    with pytest.raises(ResponseError):
        if free_tail:
            await book.create_with_free_tail(order("10001"), 5_003_600, range(100, 200, 100))
        else:
            await book.create(order("10001"))
    assert await book.get("10001") is None
    assert not await redis_client.exists(book.keys.order(MBX, "6412", "10001"))
    await redis_client.delete(book.keys.deadline_shard_of(MBX, "6412"))
    again = await book.create(order("10002"))
    assert again.status == "waiting"


async def test_a_failed_deadline_write_with_an_unloaded_script_creates_nothing(book, redis_client):
    await redis_client.set(book.keys.deadline_shard_of(MBX, "6412"), "not a zset")
    await redis_client.script_flush()
    with pytest.raises(ResponseError):
        await book.create(order("10001"))
    assert not await redis_client.exists(book.keys.order(MBX, "6412", "10001"))
    await redis_client.delete(book.keys.deadline_shard_of(MBX, "6412"))
    assert (await book.create(order("10002"))).status == "waiting"


async def test_a_failed_retry_of_an_existing_order_keeps_it_findable(book, redis_client):
    first = await book.create(order("10001"))
    await redis_client.set(book.keys.deadline_shard_of(MBX, "6412"), "not a zset")
    with pytest.raises(ResponseError):
        await book.create(order("10001"))
    await redis_client.delete(book.keys.deadline_shard_of(MBX, "6412"))
    assert await book.get("10001") == first
