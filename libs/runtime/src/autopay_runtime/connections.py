"""Readiness checks and clients for NATS and Redis, configured one way everywhere."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from faststream.nats import NatsBroker
from faststream.nats.security import NatsToken
from faststream.security import BaseSecurity, SASLPlaintext
from nats.js.errors import NotFoundError

from autopay_contracts import STREAMS, Namespace
from autopay_runtime.settings import nats_connect_options


def redis_client(url: str, name: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
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


def nats_broker(url: str, **options: Any) -> NatsBroker:
    """A FastStream broker for a NATS URL, one server or a cluster's comma-separated list, its
    credentials handed over decoded (`autopay_runtime.settings.nats_connect_options`)."""
    connect = nats_connect_options(url)
    security: BaseSecurity | None = None
    if "password" in connect:
        security = SASLPlaintext(username=connect["user"], password=connect["password"])
    elif "token" in connect:
        security = NatsToken(token=connect["token"])
    return NatsBroker(connect["servers"], security=security, **options)
