"""A local Redis Cluster (3 masters by default) from the same `redis-server` binary as the
single server: each node on a free port whose cluster-bus port (port + 10000) is free too, the
16 384 slots split evenly, joined with `CLUSTER MEET`, ready once every node says `ok`.

The URL is `redis+cluster://127.0.0.1:<first port>/0`: `autopay_runtime.connections` opens
a `RedisCluster` for that scheme, which finds the other nodes from the first.
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from autopay_runtime.settings import is_cluster_url, plain_url
from autopay_testing.servers import (
    ServerProcess,
    _spawn,
    _workdir,
    port_free,
    redis_server_binary,
)

SLOTS = 16384
BUS_OFFSET = 10000


def cluster_port() -> int:
    """A free port below 55 536 whose bus port (+10 000) is free as well."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + BUS_OFFSET < 65536 and port_free(port + BUS_OFFSET):
            return port
        port = 20000 + (port % 30000)
        if port_free(port) and port_free(port + BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


@dataclass
class RedisClusterProcess:
    """The nodes of a local Redis Cluster; `stop()` ends them all."""

    nodes: list[ServerProcess]
    workdir: Path
    owns_workdir: bool = False
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for node in self.nodes:
            node.stop()
        if self.owns_workdir:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisClusterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_node(
    workdir: Path,
    port: int,
    persistent: bool,
    log_file: Path | None,
    password: str | None = None,
    acl_users: tuple[str, ...] = (),
) -> ServerProcess:
    """One cluster node (its `nodes.conf` and AOF in `workdir`); restartable on the same
    directory and port, where it finds its slots and peers again. `password` and `acl_users`
    as for `start_redis` (every node gets the same users)."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1"]
    args += ["--dir", str(workdir), "--save", "", "--protected-mode", "no"]
    args += ["--appendonly", "yes" if persistent else "no"]
    if password is not None:
        args += ["--requirepass", password]
    for acl in acl_users:
        args += ["--user", *acl.split()]
    args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    args += ["--cluster-node-timeout", "3000", "--cluster-require-full-coverage", "yes"]
    url = f"redis://127.0.0.1:{port}/0"
    return _spawn("redis", args, port, url, (workdir, False), log_file)


def start_redis_cluster(
    masters: int = 3,
    workdir: Path | None = None,
    persistent: bool = False,
    log_dir: Path | None = None,
    timeout: float = 30.0,
    password: str | None = None,
    acl_users: tuple[str, ...] = (),
    ports: list[int] | None = None,
) -> RedisClusterProcess:
    """`masters` nodes on free ports, formed into one cluster. Given the `ports` of a cluster
    formed before in `workdir` (its nodes' `nodes.conf`), the nodes start on them again and
    find each other: nothing is formed anew."""
    path, owned = _workdir(workdir, "autopay-redis-cluster-")
    nodes: list[ServerProcess] = []
    cluster = RedisClusterProcess(nodes, path, owned)
    formed = ports is not None and all(
        (path / f"node-{i}" / "nodes.conf").exists() for i in range(len(ports))
    )
    ports = ports or [cluster_port() for _ in range(masters)]
    try:
        for i, port in enumerate(ports):
            log = log_dir / f"redis-{i}.log" if log_dir else None
            nodes.append(start_node(path / f"node-{i}", port, persistent, log, password, acl_users))
        if formed:
            wait_formed(cluster.ports, timeout, password)
        else:
            form(cluster.ports, timeout, password)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _clients(ports: list[int], password: str | None) -> list[redis.Redis]:
    return [
        redis.Redis(port=p, host="127.0.0.1", password=password, decode_responses=True)
        for p in ports
    ]


def wait_formed(ports: list[int], timeout: float = 30.0, password: str | None = None) -> None:
    """Until every node says `cluster_state:ok` and knows all the others."""
    clients = _clients(ports, password)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if all(_ready(client, len(ports)) for client in clients):
                    return
            time.sleep(0.1)
        raise TimeoutError(f"the Redis Cluster on {ports} is not ok after {timeout}s")
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()


def form(ports: list[int], timeout: float = 30.0, password: str | None = None) -> None:
    """Give each node its share of the slots, introduce them, wait for `cluster_state:ok`."""
    clients = _clients(ports, password)
    try:
        share = SLOTS // len(ports)
        for i, client in enumerate(clients):
            first = i * share
            last = SLOTS - 1 if i == len(ports) - 1 else first + share - 1
            client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
    wait_formed(ports, timeout, password)


def _ready(client: redis.Redis, size: int) -> bool:
    info = client.execute_command("CLUSTER", "INFO")
    if isinstance(info, bytes | str):
        text = info.decode() if isinstance(info, bytes) else info
        info = dict(line.split(":", 1) for line in text.split() if ":" in line)
    return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == size


def sync_client(url: str) -> redis.Redis:
    """A blocking client for `url` (a `RedisCluster` for a `redis+cluster://` one), for tests
    that look at Redis from outside the event loop."""
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, decode_responses=True)
    return redis.RedisCluster.from_url(plain_url(url), decode_responses=True)
