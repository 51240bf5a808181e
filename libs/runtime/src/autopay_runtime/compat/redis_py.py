"""redis-py internals this code relies on (redis-py 8, `redis.asyncio.client.Pipeline`).

The batching client (`autopay_runtime.redis_batching`) lets a caller build a
non-transactional pipeline as usual and then, instead of sending it, hands its queued commands
to the next batch. That needs three things redis-py does not offer publicly: a `Pipeline` made
on a client's pool by its constructor, the queued commands (`command_stack`, a list of
`(args, options)`), and whether the pipeline must go out by itself (`scripts` registered on it,
or a `WATCH` in progress). They are read here and nowhere else.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline


def pipeline_on(client: aioredis.Redis, cls: type[Pipeline] = Pipeline) -> Pipeline:
    """A non-transactional pipeline of class `cls` on `client`'s connection pool."""
    return cls(client.connection_pool, client.response_callbacks, False, None)


def take_queued(pipe: Pipeline) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """The commands queued on `pipe` as `(args, options)`, removed from it."""
    stack, pipe.command_stack = pipe.command_stack, []
    return [(tuple(args), dict(options)) for args, options in stack]


def must_go_alone(pipe: Pipeline) -> bool:
    """`pipe` registered scripts (it loads them before its commands) or watches keys."""
    return bool(pipe.scripts or pipe.watching)
