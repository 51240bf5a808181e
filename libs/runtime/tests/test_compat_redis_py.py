"""The redis-py Pipeline internals `autopay_runtime.compat.redis_py` reads, against real Redis:
this fails loudly when an upgrade changes them."""

from __future__ import annotations

from redis.asyncio.client import Pipeline

from autopay_runtime.compat.redis_py import must_go_alone, pipeline_on, take_queued
from autopay_runtime.settings import is_cluster_url


async def test_a_pipeline_made_on_a_pool_queues_takes_and_still_runs(redis_url, redis_prefix):
    if is_cluster_url(redis_url):  # the batching client serves a single Redis only
        from autopay_testing.servers import start_redis

        with start_redis() as server:
            await _check(server.url, redis_prefix)
        return
    await _check(redis_url, redis_prefix)


async def _check(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        pipe = pipeline_on(client)
        assert isinstance(pipe, Pipeline) and not pipe.is_transaction
        pipe.set(f"{prefix}:a", "1")
        pipe.get(f"{prefix}:a")
        queued = take_queued(pipe)
        assert [args for args, _ in queued] == [("SET", f"{prefix}:a", "1"), ("GET", f"{prefix}:a")]
        assert pipe.command_stack == [] and not must_go_alone(pipe)
        for args, options in queued:  # what the batch does with them
            pipe.execute_command(*args, **options)
        assert await pipe.execute() == [True, "1"]
        script = client.register_script("return 1")
        scripted = pipeline_on(client)
        await script(keys=[], args=[], client=scripted)
        assert must_go_alone(scripted)
        await scripted.reset()
        await client.delete(f"{prefix}:a")
    finally:
        await client.aclose()
