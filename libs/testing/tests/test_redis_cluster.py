"""The local Redis Cluster the harness starts: three masters sharing the slots, reached through
one `redis+cluster://` URL by the same client factory the services use."""

from __future__ import annotations

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
