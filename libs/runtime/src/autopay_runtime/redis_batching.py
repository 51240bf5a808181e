"""A Redis client that sends the commands of concurrent requests as one pipeline.

Under load many requests wait on Redis at the same moment, each paying a full round trip and
a socket write. Commands issued in the same event-loop iteration are queued and sent together
as one non-transactional pipeline; each caller gets its own reply (or its own error, e.g.
`NoScriptError`, which `Script` handles as usual). Order is preserved, so a coroutine's
commands still run in the order it awaited them. A lone command goes out directly. Every
service whose many tasks wait on Redis at once talks to it this way (all but the matcher, whose
batches are pipelines already).
Non-transactional pipelines (`.pipeline(transaction=False)`) join the batch as a group, in
order; transactions (MULTI/EXEC, WATCH) go out on their own connection as before.

Batches travel on a second connection pool without a per-read socket timeout, under one
`batch_timeout_s` deadline for the whole batch instead: redis-py arms a timer for every reply it
reads, which costs more than the command itself. A batch that times out drops its connection
(redis-py disconnects on any interrupted read) and every caller gets `redis.TimeoutError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.client import Pipeline

from autopay_runtime.compat.redis_py import must_go_alone, pipeline_on, take_queued
from autopay_runtime.connections import redis_client
from autopay_runtime.settings import is_cluster_url

_DIRECT = frozenset({"WATCH", "UNWATCH", "MULTI", "EXEC", "SUBSCRIBE", "PSUBSCRIBE", "MONITOR"})


class BatchingRedis(aioredis.Redis):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: list[tuple[tuple[Any, ...], Mapping[str, Any], asyncio.Future]] = []
        self._flush_scheduled = False
        self._flushes: set[asyncio.Task] = set()
        self._batches: aioredis.Redis = self
        self._batch_timeout_s: float | None = None

    def send_batches_via(self, batches: aioredis.Redis, timeout_s: float) -> None:
        """Send batches on `batches` (a client without a socket read timeout), `timeout_s` each."""
        self._batches = batches
        self._batch_timeout_s = timeout_s

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self._batches is not self:
            await self._batches.aclose()
        await super().aclose(close_connection_pool)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = str(args[0]).upper()
        if name in _DIRECT or name.startswith("B"):  # blocking commands (BLPOP...) go alone
            return await super().execute_command(*args, **options)
        return await self._enqueue(args, options)

    def _enqueue(self, args: tuple[Any, ...], options: Mapping[str, Any]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        reply = loop.create_future()
        self._queue.append((args, options, reply))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush_soon)
        return reply

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        if transaction:
            return super().pipeline(transaction, shard_hint)
        pipe = pipeline_on(self, _BatchedPipeline)
        pipe._owner = self  # type: ignore[attr-defined]
        return pipe

    def _flush_soon(self) -> None:
        self._flush_scheduled = False
        batch, self._queue = self._queue, []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _send(
        self, batch: list[tuple[tuple[Any, ...], Mapping[str, Any], asyncio.Future]]
    ) -> None:
        try:
            try:
                async with asyncio.timeout(self._batch_timeout_s):
                    results = await self._send_now(batch)
            except TimeoutError as exc:
                raise redis.exceptions.TimeoutError("Redis batch timed out") from exc
        except BaseException as exc:
            for _, _, reply in batch:
                if not reply.done():
                    reply.set_exception(exc if isinstance(exc, Exception) else ConnectionError())
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, reply), result in zip(batch, results, strict=True):
            if reply.done():
                continue
            if isinstance(result, Exception):
                reply.set_exception(result)
            else:
                reply.set_result(result)

    async def _send_now(
        self, batch: list[tuple[tuple[Any, ...], Mapping[str, Any], asyncio.Future]]
    ) -> list[Any]:
        if len(batch) == 1:
            args, options, _ = batch[0]
            if self._batches is self:
                return [await super().execute_command(*args, **options)]
            return [await self._batches.execute_command(*args, **options)]
        pipeline = (
            super().pipeline(transaction=False)
            if self._batches is self
            else self._batches.pipeline(transaction=False)
        )
        async with pipeline as pipe:
            for args, options, _ in batch:
                pipe.execute_command(*args, **options)
            return await pipe.execute(raise_on_error=False)


class _BatchedPipeline(Pipeline):
    """A non-transactional pipeline whose commands join the owner's next batch."""

    _owner: BatchingRedis

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if must_go_alone(self):
            return await super().execute(raise_on_error)
        replies = [self._owner._enqueue(args, options) for args, options in take_queued(self)]
        results = list(await asyncio.gather(*replies, return_exceptions=True))
        if raise_on_error:
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return results


def batching_redis_client(
    url: str,
    name: str,
    timeout_s: float = 5.0,
    max_connections: int | None = None,
    pool_timeout_s: float = 5.0,
) -> aioredis.Redis:
    """Same options as `autopay_runtime.connections.redis_client` (`timeout_s` = its socket
    timeout), with batching; batches are bounded by `timeout_s` as a whole. With
    `max_connections`, each of the two pools holds at most that many connections and a caller
    past it *waits* (up to `pool_timeout_s`) for one to come free instead of failing at once.
    A Redis Cluster gets the plain cluster client: its commands go to as many nodes as their
    keys' slots."""
    if is_cluster_url(url):
        return redis_client(url, name)
    options: dict[str, Any] = dict(
        decode_responses=True,
        client_name=name,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
    )

    def pool(socket_timeout: float | None) -> aioredis.ConnectionPool | None:
        if max_connections is None:
            return None
        return aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout_s,
            socket_timeout=socket_timeout,
            **options,
        )

    def made(cls: type[aioredis.Redis], socket_timeout: float | None) -> aioredis.Redis:
        if (bounded := pool(socket_timeout)) is not None:
            return cls.from_pool(bounded)
        return cls.from_url(url, socket_timeout=socket_timeout, **options)

    # redis-py annotates from_url as returning a Redis, though it builds the class it is called on
    client = cast(BatchingRedis, made(BatchingRedis, timeout_s))
    client.send_batches_via(made(aioredis.Redis, None), timeout_s)
    return client
