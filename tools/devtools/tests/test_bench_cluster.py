"""`make bench BENCH=cluster` at tiny sizes: it runs on both Redis setups and reports its keys.
No figure is asserted (speed is never tested), only that each is there and positive."""

from __future__ import annotations

from autopay_devtools.bench import cluster, gateway

KEYS = {
    "cluster_create_payment_ratio",
    "cluster_create_payment_rps",
    "single_redis_create_payment_rps",
    "cluster_matcher_ratio",
    "cluster_matcher_credits_per_s",
    "single_redis_matcher_credits_per_s",
    "cluster_matcher_orders_waiting",
    "cluster_masters",
    "cpu_count",
}


def test_cluster_bench_reports_its_keys(monkeypatch) -> None:
    monkeypatch.setattr(cluster, "ROUNDS", 1)
    monkeypatch.setattr(cluster, "MATCHER_ORDERS", 200)
    monkeypatch.setattr(cluster, "MATCHER_CREDITS", 50)
    monkeypatch.setattr(gateway, "SECONDS", 0.3)
    figures = cluster.run()
    assert set(figures) == KEYS
    assert all(value > 0 for value in figures.values())
    assert figures["cluster_masters"] == 3
