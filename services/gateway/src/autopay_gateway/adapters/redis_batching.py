"""A Redis client that sends the commands of concurrent requests as one pipeline.

Under load many requests wait on Redis at the same moment, each paying a full round trip and
a socket write. Commands issued in the same event-loop iteration are queued and sent together
as one non-transactional pipeline; each caller gets its own reply (or its own error, e.g.
`NoScriptError`, which `Script` handles as usual). Order is preserved, so a coroutine's
commands still run in the order it awaited them. A lone command goes out directly.
Non-transactional pipelines (`.pipeline(transaction=False)`) join the batch as a group, in
order; transactions (MULTI/EXEC, WATCH) go out on their own connection as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

_DIRECT = frozenset({"WATCH", "UNWATCH", "MULTI", "EXEC", "SUBSCRIBE", "PSUBSCRIBE", "MONITOR"})


class BatchingRedis(aioredis.Redis):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future]] = []
        self._flush_scheduled = False
        self._flushes: set[asyncio.Task] = set()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = str(args[0]).upper()
        if name in _DIRECT or name.startswith("B"):  # blocking commands (BLPOP...) go alone
            return await super().execute_command(*args, **options)
        return await self._enqueue(args, options)

    def _enqueue(self, args: tuple[Any, ...], options: dict[str, Any]) -> asyncio.Future:
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
        return _BatchedPipeline(self)

    def _flush_soon(self) -> None:
        self._flush_scheduled = False
        batch, self._queue = self._queue, []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _send(
        self, batch: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future]]
    ) -> None:
        try:
            if len(batch) == 1:
                args, options, _ = batch[0]
                results = [await super().execute_command(*args, **options)]
            else:
                async with super().pipeline(transaction=False) as pipe:
                    for args, options, _ in batch:
                        pipe.execute_command(*args, **options)
                    results = await pipe.execute(raise_on_error=False)
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


class _BatchedPipeline(Pipeline):
    """A non-transactional pipeline whose commands join the owner's next batch."""

    def __init__(self, owner: BatchingRedis) -> None:
        super().__init__(owner.connection_pool, owner.response_callbacks, False, None)
        self._owner = owner

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self.scripts or self.watching:
            return await super().execute(raise_on_error)
        stack, self.command_stack = self.command_stack, []
        replies = [self._owner._enqueue(args, options) for args, options in stack]
        results = list(await asyncio.gather(*replies, return_exceptions=True))
        if raise_on_error:
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return results


def batching_redis_client(url: str, name: str) -> BatchingRedis:
    """Same options as `autopay_runtime.connections.redis_client`, with batching."""
    return BatchingRedis.from_url(
        url,
        decode_responses=True,
        client_name=name,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
