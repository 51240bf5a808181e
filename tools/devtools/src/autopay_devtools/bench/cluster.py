"""The cost of Redis Cluster mode (how the services scale past one machine): one service process on
a local 3-master Redis Cluster ÷ the same process on a single Redis, both in the same run.

- `cluster_create_payment_ratio`: create-payment req/s of one gateway process. The setup and
  the load generator are gateway.py's (a merchant with its rate limit lifted and 8 cards, a
  separate load process, `CONNECTIONS` keep-alive connections, closed loop). One NATS server,
  one gateway per Redis (own namespace and key prefix), both started before the first round.
- `cluster_matcher_ratio`: credits decided per second by one matcher process, matcher.py's
  run (orders preloaded, credits queued, then the matcher started; every outcome checked) at
  smaller sizes, a fresh namespace and key prefix per run.

Each figure is the median of `ROUNDS` rounds. A round measures both Redis setups one after the
other, and the order flips every round (single, cluster; cluster, single; ...), so the noise of
a shared machine falls on both. The cluster's three redis-server processes share the same cores
as everything else: what this measures is the client side of Cluster mode (redis-py's Cluster
client, slot routing, pipelines split by node, the gateway without its batching client, order
ids leased in blocks of 100), not what more machines would add.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

from autopay_devtools.bench import alternating, gateway, matcher, stop_processes

ROUNDS = int(os.environ.get("AUTOPAY_BENCH_CLUSTER_ROUNDS", "3"))
MASTERS = 3
MATCHER_ORDERS = int(os.environ.get("AUTOPAY_BENCH_CLUSTER_MATCHER_ORDERS", "20000"))
MATCHER_CREDITS = int(os.environ.get("AUTOPAY_BENCH_CLUSTER_MATCHER_CREDITS", "10000"))
SETUPS = ("single", "cluster")


def _log(message: str) -> None:
    print(f"[bench cluster] {message}", file=sys.stderr, flush=True)


def _create_payment(work: Path, nats_url: str, redis_urls: dict[str, str]) -> dict[str, float]:
    """Median create-payment req/s of one gateway process per Redis setup."""
    from autopay_store.secrets import SecretBox

    fernet = SecretBox.generate_key()
    gateways: dict[str, tuple[int, str]] = {}
    processes = []
    try:
        for setup, redis_url in redis_urls.items():
            namespace = prefix = f"benchcl{setup}"
            api_key = asyncio.run(gateway.provision(nats_url, redis_url, namespace, prefix, fernet))
            process, port = gateway.start_gateway(
                nats_url, redis_url, namespace, prefix, fernet, work / f"gateway-{setup}.log"
            )
            processes.append(process)
            gateways[setup] = (port, api_key)
        rps: dict[str, list[float]] = {setup: [] for setup in redis_urls}
        for round_ in range(ROUNDS):
            for setup in alternating(SETUPS, round_):
                port, api_key = gateways[setup]
                base = 10_000_000 * (round_ + 1)
                rps[setup].append(
                    gateway.closed_loop_rps(f"gateway on {setup}", port, api_key, base)
                )
            _log(
                f"create-payment round {round_ + 1}: single {rps['single'][-1]:.0f} req/s, "
                f"cluster {rps['cluster'][-1]:.0f} req/s"
            )
    finally:
        for process in processes:
            stop_processes([process], 10)
    return {setup: statistics.median(values) for setup, values in rps.items()}


def _matcher(nats_url: str, redis_urls: dict[str, str]) -> dict[str, float]:
    """Median credits/s of one matcher process per Redis setup."""
    from autopay_contracts import Namespace

    rates: dict[str, list[float]] = {setup: [] for setup in redis_urls}
    for round_ in range(ROUNDS):
        for setup in alternating(SETUPS, round_):
            plan = matcher.Plan(
                ns=Namespace(f"benchclm{setup}{round_}"),
                prefix=f"benchclm-{setup}-{round_}",
                orders_waiting=MATCHER_ORDERS,
                credits_sent=MATCHER_CREDITS,
            )
            rate, _ = asyncio.run(matcher.measure(nats_url, redis_urls[setup], plan))
            rates[setup].append(rate)
        _log(
            f"matcher round {round_ + 1}: single {rates['single'][-1]:.0f}/s, "
            f"cluster {rates['cluster'][-1]:.0f}/s"
        )
    return {setup: statistics.median(values) for setup, values in rates.items()}


def run() -> dict[str, float]:
    from autopay_testing.redis_cluster import start_redis_cluster
    from autopay_testing.servers import start_nats, start_redis

    with tempfile.TemporaryDirectory(prefix="autopay-bench-cluster-") as tmp:
        work = Path(tmp)
        with (
            start_nats(work / "nats") as nats_server,
            start_redis(work / "redis") as single,
            start_redis_cluster(masters=MASTERS, workdir=work / "cluster") as cluster,
        ):
            _log(f"single Redis on {single.port}, {MASTERS}-master Cluster on {cluster.ports}")
            redis_urls = {"single": single.url, "cluster": cluster.url}
            create = _create_payment(work, nats_server.url, redis_urls)
            credits = _matcher(nats_server.url, redis_urls)
    return {
        "cluster_create_payment_ratio": round(create["cluster"] / create["single"], 3),
        "cluster_create_payment_rps": round(create["cluster"], 1),
        "single_redis_create_payment_rps": round(create["single"], 1),
        "cluster_matcher_ratio": round(credits["cluster"] / credits["single"], 3),
        "cluster_matcher_credits_per_s": round(credits["cluster"], 1),
        "single_redis_matcher_credits_per_s": round(credits["single"], 1),
        "cluster_matcher_orders_waiting": MATCHER_ORDERS,
        "cluster_masters": MASTERS,
        "cpu_count": os.cpu_count() or 0,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run()))
