"""Readiness checks and clients for NATS and Redis, configured one way everywhere."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from faststream.nats import NatsBroker
from nats.js.errors import NotFoundError
from redis.asyncio.cluster import RedisCluster

from autopay_contracts import STREAMS, Namespace
from autopay_runtime.settings import is_cluster_url


def open_redis(url: str, **options: Any) -> aioredis.Redis:
    """A client for `url`: a `RedisCluster` (typed as the `Redis` it stands in for) for a
    `redis+cluster://` URL, which discovers every node from the one it names; else a `Redis`.
    `options` are redis-py's (`decode_responses` defaults to True)."""
    options.setdefault("decode_responses", True)
    if not is_cluster_url(url):
        return aioredis.Redis.from_url(url, **options)
    parts = urlsplit(url)
    plain = urlunsplit((parts.scheme.removesuffix("+cluster"), *parts[1:]))
    return RedisCluster.from_url(plain, **options)  # type: ignore[return-value]


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def redis_client(url: str, name: str) -> aioredis.Redis:
    return open_redis(
        url,
        client_name=name,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


def redis_ready(client: aioredis.Redis):
    async def check() -> bool:
        return bool(await client.ping())

    return check


def broker_ready(broker: NatsBroker):
    async def check() -> bool:
        return await broker.ping(timeout=1.0)

    return check


def streams_ready(broker: NatsBroker, ns: Namespace):
    """True once the provisioning step has declared every stream (services never declare)."""

    async def check() -> bool:
        js = broker.config.connection_state.stream
        for spec in STREAMS:
            try:
                await js.stream_info(spec.name(ns))
            except NotFoundError:
                return False
        return True

    return check


def dependency_checks(broker: NatsBroker, redis: aioredis.Redis, ns: Namespace):
    """The readiness checks every service has: NATS connected, Redis answering, streams there."""
    return [
        ("nats", broker_ready(broker)),
        ("redis", redis_ready(redis)),
        ("streams", streams_ready(broker, ns)),
    ]
