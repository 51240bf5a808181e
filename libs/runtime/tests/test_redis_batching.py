"""The batching Redis client: concurrent commands share a pipeline, each gets its own reply."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions

from autopay_runtime.redis_batching import batching_redis_client
from autopay_runtime.settings import is_cluster_url
from autopay_testing.servers import start_redis


@pytest.fixture(scope="module")
def single_redis_url(redis_url):
    """The batching client serves one Redis only (on a Cluster the gateway uses the plain
    cluster client), so a suite run on a Cluster tests it on a Redis of its own."""
    if not is_cluster_url(redis_url):
        yield redis_url
        return
    with start_redis() as server:
        yield server.url


@pytest.fixture
async def batching(single_redis_url, redis_prefix):
    client = batching_redis_client(single_redis_url, "test")
    yield client
    keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_concurrent_commands_get_their_own_replies_and_errors(batching, redis_prefix):
    key = f"{redis_prefix}:n"
    text = f"{redis_prefix}:text"
    await batching.set(text, "not a number")
    results = await asyncio.gather(
        *(batching.incr(key) for _ in range(50)),
        batching.incr(text),
        batching.get(text),
        return_exceptions=True,
    )
    assert sorted(results[:50]) == list(range(1, 51))
    assert isinstance(results[50], redis.exceptions.ResponseError)
    assert results[51] == "not a number"


async def test_scripts_load_themselves_inside_a_batch(batching, redis_prefix):
    # A script body of this test's own, so the server has certainly not cached it yet.
    script = batching.register_script(
        f"-- {redis_prefix}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"
    )
    key = f"{redis_prefix}:s"
    results = await asyncio.gather(*(script(keys=[key], args=[2]) for _ in range(10)))
    assert sorted(results) == list(range(2, 21, 2))


async def test_non_transactional_pipelines_keep_their_order(batching, redis_prefix):
    key = f"{redis_prefix}:list"

    async def push(i: int) -> list:
        async with batching.pipeline(transaction=False) as pipe:
            pipe.rpush(key, f"{i}a")
            pipe.rpush(key, f"{i}b")
            return await pipe.execute()

    await asyncio.gather(*(push(i) for i in range(10)))
    items = await batching.lrange(key, 0, -1)
    assert len(items) == 20
    for i in range(10):
        assert items.index(f"{i}a") < items.index(f"{i}b")
    async with batching.pipeline(transaction=True) as tx:
        tx.incr(f"{redis_prefix}:tx")
        tx.incr(f"{redis_prefix}:tx")
        assert await tx.execute() == [1, 2]


async def test_a_slow_batch_times_out_as_a_whole_and_the_client_recovers(
    single_redis_url, redis_prefix
):
    client = batching_redis_client(single_redis_url, "test", timeout_s=0.2)
    key = f"{redis_prefix}:after"
    try:
        results = await asyncio.gather(
            client.execute_command("DEBUG", "SLEEP", "0.6"),
            client.get(key),
            return_exceptions=True,
        )
        assert all(isinstance(r, redis.exceptions.TimeoutError) for r in results), results
        deadline = asyncio.get_running_loop().time() + 5
        while True:  # the server is single-threaded: it answers once its sleep is over
            try:
                assert await client.set(key, "ok")
                break
            except redis.exceptions.TimeoutError:
                assert asyncio.get_running_loop().time() < deadline
        assert await asyncio.gather(client.get(key), client.get(key)) == ["ok", "ok"]
    finally:
        await client.delete(key)
        await client.aclose()


async def test_a_bounded_client_waits_for_a_connection_and_times_out_visibly(
    single_redis_url, redis_prefix
):
    """`max_connections`: past it a caller waits for a connection (transactions hold one each
    while they run); one that cannot get one within `pool_timeout_s` fails, it is not dropped."""
    client = batching_redis_client(single_redis_url, "test", max_connections=1, pool_timeout_s=0.3)
    key = f"{redis_prefix}:bounded"
    try:

        async def in_transaction() -> int:
            async with client.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                [n] = await pipe.execute()
                return n

        assert sorted(await asyncio.gather(*(in_transaction() for _ in range(10)))) == list(
            range(1, 11)
        )
        async with client.pipeline(transaction=True) as held:
            await held.watch(key)  # holds the only connection of the direct pool
            with pytest.raises(redis.exceptions.ConnectionError):
                await in_transaction()
            await held.unwatch()
        assert await client.get(key) == "10"
    finally:
        await client.delete(key)
        await client.aclose()
