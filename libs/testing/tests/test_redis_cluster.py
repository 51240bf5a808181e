"""The local Redis Cluster the harness starts: three masters sharing the slots, reached through
one `redis+cluster://` URL by the same client factory the services use."""

from __future__ import annotations

import redis

from autopay_runtime.connections import is_cluster, open_redis
from autopay_runtime.settings import ServiceSettings
from autopay_testing.redis_cluster import start_redis_cluster


async def test_three_masters_hold_every_slot_and_keys_spread_over_them():
    with start_redis_cluster(3) as cluster:
        client = open_redis(cluster.url)
        try:
            assert is_cluster(client)
            keys = [f"k{i}" for i in range(30)]
            for i, key in enumerate(keys):
                await client.set(key, i)
            assert await client.mget_nonatomic(keys) == [str(i) for i in range(30)]
            nodes = {client.get_node_from_key(key).port for key in keys}
            assert nodes == set(cluster.ports)
        finally:
            await client.aclose()


def test_the_cluster_mode_is_said_by_the_url_or_the_setting(monkeypatch):
    monkeypatch.setenv("AUTOPAY_REDIS_URL", "redis://10.0.0.5:7000/0")
    assert ServiceSettings().redis_cluster is False
    monkeypatch.setenv("AUTOPAY_REDIS_CLUSTER", "true")
    settings = ServiceSettings()
    assert settings.redis_url == "redis+cluster://10.0.0.5:7000/0" and settings.redis_cluster
    monkeypatch.delenv("AUTOPAY_REDIS_CLUSTER")
    monkeypatch.setenv("AUTOPAY_REDIS_URL", "rediss+cluster://u:p@10.0.0.5:7000/0")
    assert ServiceSettings().redis_cluster is True


async def test_a_killed_node_restarts_on_its_port_and_the_cluster_is_whole_again(tmp_path):
    """What the dev stack's supervisor does with a dead node (and a restart of the stack)."""
    from autopay_testing.redis_cluster import start_node, wait_formed

    with start_redis_cluster(3, workdir=tmp_path, persistent=True, password="pw") as cluster:
        client = open_redis(cluster.url.replace("//", "//:pw@"))
        for port in cluster.ports:  # under load, `everysec` may hold a write back past a kill
            with redis.Redis(port=port, password="pw") as node:
                node.config_set("appendfsync", "always")
        try:
            keys = [f"k{i}" for i in range(30)]
            for key in keys:
                await client.set(key, "v")
            victim = cluster.nodes[1]
            victim.process.kill()
            victim.process.wait(10)
            cluster.nodes[1] = start_node(
                tmp_path / "node-1", victim.port, persistent=True, log_file=None, password="pw"
            )
            wait_formed(cluster.ports, password="pw")
            assert await client.mget_nonatomic(keys) == ["v"] * 30  # its AOF kept its keys
        finally:
            await client.aclose()
        ports = cluster.ports
    with start_redis_cluster(3, workdir=tmp_path, persistent=True, password="pw", ports=ports):
        again = open_redis(f"redis+cluster://:pw@127.0.0.1:{ports[0]}/0")
        try:
            assert await again.get("k7") == "v"
        finally:
            await again.aclose()
