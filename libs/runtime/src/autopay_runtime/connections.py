"""Readiness checks and clients for NATS and Redis, configured one way everywhere."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from faststream.nats import NatsBroker
from faststream.nats.security import NatsToken
from faststream.security import BaseSecurity, SASLPlaintext
from nats.js.errors import NotFoundError
from redis.asyncio.cluster import RedisCluster

from autopay_contracts import STREAMS, Namespace
from autopay_runtime import tracing
from autopay_runtime.compat.faststream import BrokerNotConnected, jetstream
from autopay_runtime.settings import is_cluster_url, nats_connect_options, plain_url


class WaitingRedisCluster(RedisCluster):
    """A Cluster client whose commands and pipelines wait for one of `max_in_flight` places
    instead of failing (`MaxConnectionsError`) when more run at once than its per-node pools
    hold, as a `BlockingConnectionPool` makes a single Redis's client wait."""

    def __init__(self, *args: Any, max_in_flight: int, **kwargs: Any) -> None:
        kwargs["max_connections"] = max(max_in_flight, kwargs.get("max_connections") or 0)
        super().__init__(*args, **kwargs)
        self._places = asyncio.Semaphore(max_in_flight)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._places:
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = super().pipeline(*args, **kwargs)
        execute = pipe.execute

        async def waiting_execute(*a: Any, **kw: Any) -> Any:
            async with self._places:  # one connection per node the pipeline reaches
                return await execute(*a, **kw)

        pipe.execute = waiting_execute  # type: ignore[method-assign]
        return pipe


def open_redis(url: str, max_in_flight: int | None = None, **options: Any) -> aioredis.Redis:
    """A client for `url`: a `RedisCluster` (typed as the `Redis` it stands in for) for a
    `redis+cluster://` URL, which discovers every node from the one it names; else a `Redis`.
    With `max_in_flight`, a Cluster client waits for a place past that many commands at once.
    `options` are redis-py's (`decode_responses` defaults to True)."""
    options.setdefault("decode_responses", True)
    if not is_cluster_url(url):
        return aioredis.Redis.from_url(url, **options)
    plain = plain_url(url)
    if max_in_flight is not None:
        return WaitingRedisCluster.from_url(plain, max_in_flight=max_in_flight, **options)  # type: ignore[return-value]
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
        try:
            js = jetstream(broker)
        except BrokerNotConnected:
            return False
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


def nats_broker(url: str, **options: Any) -> NatsBroker:
    """A FastStream broker for a NATS URL, one server or a cluster's comma-separated list, its
    credentials handed over decoded (`autopay_runtime.settings.nats_connect_options`)."""
    connect = nats_connect_options(url)
    security: BaseSecurity | None = None
    if "password" in connect:
        security = SASLPlaintext(username=connect["user"], password=connect["password"])
    elif "token" in connect:
        security = NatsToken(token=connect["token"])
    options.setdefault("middlewares", tracing.broker_middlewares())
    return NatsBroker(connect["servers"], security=security, **options)
