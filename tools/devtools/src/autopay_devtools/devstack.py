"""The local dev stack: NATS, Redis, a demo IMAP server and the four services, no Docker.

`autopay dev up` runs `StackSupervisor` in the foreground; `--detach` starts it as a background
process and returns once every service answers `/readyz`. The supervisor restarts any process
that dies, as Kubernetes would, and keeps its state (JetStream store, Redis AOF, keys) under the
state dir so a restart of the stack keeps orders and merchants.

With `--nats-cluster 3`, NATS is a local 3-node JetStream cluster (`autopay_testing.nats_cluster`)
and the streams are provisioned at R3; the services get every node's URL. With
`--redis-cluster 3`, Redis is a local 3-master Redis Cluster (`autopay_testing.redis_cluster`)
and the services get its `redis+cluster://` URL. The sizes are kept in `run.json`, like the
ports, and a state dir keeps the sizes it was created with.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from autopay_cli.config import RUN_FILE, STACK_FILE, CliSettings, read_json, write_json
from autopay_cli.credentials import StackCredentials
from autopay_cli.operations import Operator, provision
from autopay_contracts.permissions import ADMIN_USER
from autopay_store.secrets import SecretBox
from autopay_store.tariffs import Tariff
from autopay_testing.nats_cluster import NatsCluster, NodePorts, start_nats_cluster
from autopay_testing.redis_cluster import RedisClusterProcess, start_node, start_redis_cluster
from autopay_testing.servers import (
    ServerProcess,
    die_with_parent,
    free_port,
    port_free,
    start_nats,
    start_redis,
    terminate,
    wait_for_port,
)

DEMO_GMAIL = "karta@gmail.com"
DEMO_CARD = "6412"
SERVICES = {
    "gateway": "autopay_gateway",
    "mail-ingest": "autopay_mail_ingest",
    "matcher": "autopay_matcher",
    "notifier": "autopay_notifier",
    "merchant-bot": "autopay_merchant_bot",
}
FAKE_BOT_TOKEN = "1000001:autopay-dev-stack-fake-telegram"  # noqa: S105 - not a secret
"""The token the bot uses against the stack's own fake Bot API (no real Telegram is asked)."""
IMAP_PASSWORDS_FILE = "imap-passwords.json"
TRIAL_TARIFF = Tariff("Trial", price_som=0, max_payments=100, days=14)
SOLD_TARIFF = Tariff("Pro", price_som=99_000, max_payments=10_000, days=30)
READY_TIMEOUT_S = 90.0
QUICK_EXIT_S = 3.0
MOVABLE = {"mail-ingest", "matcher", "notifier", "merchant-bot"}
"""Services whose HTTP port (health, metrics) nobody outside the stack was told: when one keeps
dying at start, as when another process took its free port in the meantime, it gets a new one."""
NATS_CLUSTER_SIZES = (1, 3)
REDIS_CLUSTER_SIZES = (1, 3)
CLUSTER_REPLICAS = 3


def _kept_size(
    state_dir: Path, requested: int | None, what: str, field: str, sizes: tuple[int, ...]
) -> int:
    if requested is not None and requested not in sizes:
        raise ValueError(f"--{what}-cluster must be one of {sizes}, not {requested}")
    path = state_dir / RUN_FILE
    before = read_json(path).get(field, 1) if path.exists() else None
    if requested is not None and before is not None and requested != before:
        label = "NATS" if what == "nats" else "Redis"
        raise ValueError(
            f"{state_dir} holds a stack with a {before}-node {label}; it cannot become"
            f" {requested} nodes (use another --state-dir, or delete this one)"
        )
    return requested or before or 1


def nats_cluster_size(state_dir: Path, requested: int | None) -> int:
    """How many NATS nodes the stack in `state_dir` runs: as requested, else as it ran before,
    else 1. A state dir keeps the size it was created with: its JetStream store is laid out for
    it (one server's, or one per node with streams at R3)."""
    return _kept_size(state_dir, requested, "nats", "nats_cluster", NATS_CLUSTER_SIZES)


def redis_cluster_size(state_dir: Path, requested: int | None) -> int:
    """How many Redis masters: as for `nats_cluster_size` (a Cluster's data is laid out in its
    nodes' slots, one Redis's in one file)."""
    return _kept_size(state_dir, requested, "redis", "redis_cluster", REDIS_CLUSTER_SIZES)


@dataclass
class Child:
    """A supervised process: how to start it, and its current incarnation."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int
    process: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    backoff: float = field(default=0.5)
    started_at: float = 0.0
    quick_exits: int = 0
    """Exits in a row within `QUICK_EXIT_S` of a start (a port another process took, say)."""

    def start(self) -> None:
        self.started_at = time.monotonic()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.process is not None
        terminate(self.process, timeout)


class StackSupervisor:
    def __init__(
        self,
        state_dir: Path,
        on_ready: Callable[[dict], None] | None = None,
        nats_cluster: int | None = None,
        redis_cluster: int | None = None,
    ) -> None:
        self.state_dir = state_dir.resolve()
        self.on_ready = on_ready
        self.logs = self.state_dir / "logs"
        self.nats_cluster_size = nats_cluster_size(self.state_dir, nats_cluster)
        self.redis_cluster_size = redis_cluster_size(self.state_dir, redis_cluster)
        self.redis_cluster: RedisClusterProcess | None = None
        self.nats: ServerProcess | None = None
        self.cluster: NatsCluster | None = None
        self.redis: ServerProcess | None = None
        self.children: dict[str, Child] = {}
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------------------
    def run(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        (self.state_dir / STACK_FILE).unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._start_everything()
            while not self._stopping:
                self._restart_dead()
                time.sleep(0.2)
        finally:
            self._stop_everything()

    def _on_signal(self, *_: object) -> None:
        self._stopping = True

    def _start_everything(self) -> None:
        persisted = self._persisted()
        # Nobody connects anonymously: a NATS user per service, Redis users per service.
        self.credentials = StackCredentials.load_or_create(persisted)
        defaults = CliSettings()
        auth_file = self.credentials.write_nats_auth(self.state_dir / "nats", defaults.ns)
        self._nats_args: dict[str, Any] = {
            "log_file": self.logs / "nats.log",
            "config_file": auth_file,
        }
        self._redis_args: dict[str, Any] = {
            "persistent": True,
            "log_file": self.logs / "redis.log",
            "password": self.credentials.redis[ADMIN_USER],
            "acl_users": self.credentials.redis_acl(defaults.redis_prefix),
        }
        if self.nats_cluster_size == 1:
            self.nats = start_nats(
                self.state_dir / "nats", port=persisted.get("nats_port"), **self._nats_args
            )
        else:
            self.cluster = start_nats_cluster(
                self.state_dir / "nats",
                self.nats_cluster_size,
                ports=persisted.get("nats_node_ports"),
                log_dir=self.logs,
                config_file=auth_file,
            )
        if self.redis_cluster_size == 1:
            self.redis = start_redis(
                self.state_dir / "redis", port=persisted.get("redis_port"), **self._redis_args
            )
        else:
            self.redis_cluster = start_redis_cluster(
                self.redis_cluster_size,
                workdir=self.state_dir / "redis-cluster",
                persistent=True,
                log_dir=self.logs,
                password=self._redis_args["password"],
                acl_users=self._redis_args["acl_users"],
                ports=persisted.get("redis_node_ports"),
            )
        redis_base = self._redis_base_url()
        nats_base = self._nats_base_url()
        settings = CliSettings(
            nats_url=self.credentials.nats_url(nats_base),
            redis_url=self.credentials.redis_url(redis_base),
            secret_keys=persisted["secret_key"],
            imap_host="127.0.0.1",
            imap_port=persisted.get("imap_port") or free_port(),
            imap_tls=False,
        )
        imap_password = persisted["imap_password"]
        self._add_child(
            "imap",
            [
                *(sys.executable, "-m", "autopay_testing.imap", "--host", "127.0.0.1"),
                *("--port", str(settings.imap_port), "--user", f"{DEMO_GMAIL}:{imap_password}"),
                # one argument, `=`-joined: a random password may begin with "-"
                f"--any-user-password={imap_password}",
                f"--passwords-file={self.state_dir / IMAP_PASSWORDS_FILE}",
            ],
            settings.imap_port,
            {},
        )
        wait_for_port(settings.imap_port)
        replicas = CLUSTER_REPLICAS if self.cluster is not None else 1
        asyncio.run(provision(settings.nats_url, settings.namespace, replicas))
        demo = asyncio.run(self._bootstrap_demo(settings, imap_password, persisted))
        ports = {name: persisted.get(f"{name}_port") or free_port() for name in SERVICES}
        env = self._service_env(settings)
        metrics_port = persisted.get("gateway_metrics_port") or free_port()
        admin_port = persisted.get("gateway_admin_port") or free_port()
        telegram = self._telegram(persisted)
        gateway_url = f"http://127.0.0.1:{ports['gateway']}"
        for name, module in SERVICES.items():
            child_env = {
                **env,
                "AUTOPAY_NATS_URL": self.credentials.nats_url(nats_base, name),
                "AUTOPAY_REDIS_URL": self.credentials.redis_url(redis_base, name),
                "AUTOPAY_ADMIN_TOKEN": persisted["admin_token"],
            }
            if name == "gateway":  # /metrics and the admin API on internal ports
                child_env["AUTOPAY_METRICS_PORT"] = str(metrics_port)
                child_env["AUTOPAY_ADMIN_PORT"] = str(admin_port)
            if name == "merchant-bot":
                child_env.update(
                    self._bot_env(telegram, gateway_url, f"http://127.0.0.1:{admin_port}", demo)
                )
            self._add_child(name, [sys.executable, "-m", module], ports[name], child_env)
        run = {
            "supervisor_pid": os.getpid(),
            "env": settings.model_dump() | {"secret_keys": settings.secret_keys.get_secret_value()},
            "nats_cluster": self.nats_cluster_size,
            "nats_port": self._nats_port(),
            "nats_urls": nats_base.split(","),
            "redis_cluster": self.redis_cluster_size,
            "redis_port": self._redis_port(),
            "imap_port": settings.imap_port,
            "imap_password": imap_password,
            "secret_key": persisted["secret_key"],
            "credentials": self.credentials.as_dict(),
            "demo": demo,
            **{f"{name}_port": port for name, port in ports.items()},
            "gateway_metrics_port": metrics_port,
            "gateway_admin_port": admin_port,
            "admin_token": persisted["admin_token"],
            "telegram": telegram,
            "telegram_port": telegram.get("port"),
        }
        if self.cluster is not None:
            run["nats_node_ports"] = [node.ports.as_dict() for node in self.cluster.nodes]
        if self.redis_cluster is not None:
            run["redis_node_ports"] = self.redis_cluster.ports
        self._write_run(run)
        self._wait_ready()
        stack = {
            "gateway_url": gateway_url,
            "api_key": demo["api_key"],
            "test_api_key": demo["test_api_key"],
            "webhook_secret": demo["webhook_secret"],
            "merchant_id": demo["merchant_id"],
            "card": {"card_last4": DEMO_CARD, "gmail": DEMO_GMAIL},
            "imap": {
                "host": "127.0.0.1",
                "port": settings.imap_port,
                "user": DEMO_GMAIL,
                "password": imap_password,
                "tls": False,
            },
            "nats_url": settings.nats_url,
            "redis_url": settings.redis_url,
            "admin_url": f"http://127.0.0.1:{admin_port}",
            "bot": telegram,
        }
        if self.cluster is not None:
            stack["nats_nodes"] = self._nats_nodes()
        if self.redis_cluster is not None:
            stack["redis_nodes"] = self._redis_nodes()
        write_json(self.state_dir / STACK_FILE, stack, private=True)
        if self.on_ready:
            self.on_ready(read_json(self.state_dir / STACK_FILE))

    def _nats_base_url(self) -> str:
        """The NATS server, or every node of the cluster comma-separated, without credentials."""
        if self.cluster is not None:
            return self.cluster.url
        assert self.nats is not None
        return self.nats.url

    def _redis_base_url(self) -> str:
        """The Redis server's URL, or the Cluster's (`redis+cluster://` its first node), without
        credentials."""
        if self.redis_cluster is not None:
            return self.redis_cluster.url
        assert self.redis is not None
        return self.redis.url

    def _redis_nodes(self) -> list[dict]:
        """`stack.json`'s `redis_nodes`: each master's URL (admin credentials) and current pid."""
        assert self.redis_cluster is not None
        return [
            {"url": self.credentials.redis_url(node.url), "pid": node.process.pid}
            for node in self.redis_cluster.nodes
        ]

    def _nats_nodes(self) -> list[dict]:
        """`stack.json`'s `nats_nodes`: each node's URL (admin credentials) and current pid."""
        assert self.cluster is not None
        return [
            {"name": node.name, "url": self.credentials.nats_url(node.url), "pid": node.pid}
            for node in self.cluster.nodes
        ]

    def _persisted(self) -> dict:
        """Ports and secrets kept across restarts of the stack in the same state dir."""
        path = self.state_dir / RUN_FILE
        run = read_json(path) if path.exists() else {}
        for key in [k for k in run if k.endswith("_port")]:
            if not run[key] or not port_free(run[key]):
                del run[key]
        redis_nodes = run.pop("redis_node_ports", None)
        if (
            redis_nodes
            and len(redis_nodes) == self.redis_cluster_size
            and all(port_free(p) and port_free(p + 10000) for p in redis_nodes)
        ):
            run["redis_node_ports"] = redis_nodes  # a Cluster's nodes know each other by address
        nodes = run.pop("nats_node_ports", None)
        if nodes and len(nodes) == self.nats_cluster_size:
            ports = [NodePorts(**node) for node in nodes]
            # A node is known to JetStream by its name, not its address: when one port is
            # taken, every node gets new ones (the routes name each other's).
            if all(port_free(p) for node in ports for p in node.as_dict().values()):
                run["nats_node_ports"] = ports
        run.setdefault("secret_key", SecretBox.generate_key())
        run.setdefault("imap_password", secrets.token_urlsafe(12))
        run.setdefault("admin_token", secrets.token_urlsafe(24))
        return run

    def _telegram(self, persisted: dict) -> dict:
        """The Bot API the merchant bot polls: Telegram itself when `AUTOPAY_BOT_TOKEN` is set
        in the environment, else a local fake (`autopay_testing.telegram`) that `autopay dev
        bot` talks to as a merchant would."""
        if os.environ.get("AUTOPAY_BOT_TOKEN"):
            url = os.environ.get("AUTOPAY_TELEGRAM_API_URL", "https://api.telegram.org")
            return {"fake": False, "telegram_api_url": url}
        port = persisted.get("telegram_port") or free_port()
        argv = [sys.executable, "-m", "autopay_testing.telegram", "--host", "127.0.0.1"]
        self._add_child("telegram", [*argv, "--port", str(port)], port, {})
        wait_for_port(port)
        return {"fake": True, "telegram_api_url": f"http://127.0.0.1:{port}", "port": port}

    def _bot_env(self, telegram: dict, gateway_url: str, admin_url: str, demo: dict) -> dict:
        """The bot: the stack's gateway, the demo merchant as the operator (subscriptions are
        paid to the demo card), merchants joining by invite unless the environment says."""
        env = {
            "AUTOPAY_TELEGRAM_API_URL": telegram["telegram_api_url"],
            "AUTOPAY_GATEWAY_URL": gateway_url,
            "AUTOPAY_ADMIN_URL": admin_url,
            "AUTOPAY_TRIAL_TARIFF": TRIAL_TARIFF.name,
            "AUTOPAY_OPERATOR_API_KEY": demo["api_key"],
            "AUTOPAY_OPERATOR_CARD_LAST4": DEMO_CARD,
            "AUTOPAY_OPERATOR_GMAIL": DEMO_GMAIL,
            "AUTOPAY_MAILBOX_DOWN_GRACE_S": os.environ.get("AUTOPAY_MAILBOX_DOWN_GRACE_S", "60"),
        }
        if telegram["fake"]:
            env["AUTOPAY_BOT_TOKEN"] = FAKE_BOT_TOKEN
        return env

    async def _bootstrap_demo(self, settings: CliSettings, imap_password: str, persisted: dict):
        """The demo merchant, its live and test keys, and the demo card (reused when present)."""
        async with Operator(settings) as op:
            for tariff in (TRIAL_TARIFF, SOLD_TARIFF):
                if await op.tariffs.get(tariff.name) is None:
                    await op.tariffs.save(tariff)
            demo = persisted.get("demo")
            if demo and await op.accounts.authenticate(demo["api_key"]):
                await op.add_card(demo["merchant_id"], DEMO_CARD, DEMO_GMAIL, imap_password)
                await op.add_sandbox_card(demo["merchant_id"], DEMO_CARD, DEMO_GMAIL)
                return demo
            created = await op.create_merchant("Demo shop", "Asosiy", 100_000, 365, test=False)
            merchant_id = created.merchant.merchant_id
            test_key = await op.accounts.rotate_api_key(merchant_id, test=True)
            await op.add_card(merchant_id, DEMO_CARD, DEMO_GMAIL, imap_password)
            # The test key's world: the same card in the sandbox, paid by sandbox transfers.
            await op.add_sandbox_card(merchant_id, DEMO_CARD, DEMO_GMAIL)
            return {
                "merchant_id": merchant_id,
                "api_key": created.api_key,
                "test_api_key": test_key,
                "webhook_secret": created.webhook_secret,
            }

    def _service_env(self, settings: CliSettings) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "AUTOPAY_NATS_URL": settings.nats_url,
                "AUTOPAY_REDIS_URL": settings.redis_url,
                "AUTOPAY_NAMESPACE": settings.namespace,
                "AUTOPAY_REDIS_PREFIX": settings.redis_prefix,
                "AUTOPAY_SECRET_KEYS": settings.secret_keys.get_secret_value(),
                "AUTOPAY_HTTP_HOST": "127.0.0.1",
                "AUTOPAY_IMAP_HOST": settings.imap_host,
                "AUTOPAY_IMAP_PORT": str(settings.imap_port),
                "AUTOPAY_IMAP_TLS": "false",
                "AUTOPAY_ALLOW_HTTP_LOOPBACK": "true",
                "AUTOPAY_ALLOW_HTTP_LOOPBACK_WEBHOOKS": "true",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _nats_port(self) -> int:
        """The client port of the single server, or of the cluster's first node."""
        if self.cluster is not None:
            return self.cluster.nodes[0].ports.port
        assert self.nats is not None
        return self.nats.port

    def _redis_port(self) -> int:
        """The single server's port, or the Redis Cluster's first master's."""
        if self.redis_cluster is not None:
            return self.redis_cluster.ports[0]
        assert self.redis is not None
        return self.redis.port

    def _add_child(self, name: str, argv: list[str], port: int, env: dict[str, str]) -> None:
        child_env = dict(env or os.environ)
        child_env["AUTOPAY_HTTP_PORT"] = str(port)
        child = Child(name, argv, child_env, self.logs / f"{name}.log", port)
        child.start()
        self.children[name] = child

    def _restart_dead(self) -> None:
        changed = False
        for node in self.cluster.nodes if self.cluster is not None else []:
            if node.server is not None and not node.alive():
                code = node.server.process.returncode
                self._log(f"{node.name} exited with {code}; restarting")
                assert self.cluster is not None
                self.cluster.start_node(node.index)  # same ports, same store dir: it rejoins
                changed = True
        for i, master in enumerate(self.redis_cluster.nodes if self.redis_cluster else []):
            if master.process.poll() is not None:
                self._log(f"redis node {i} exited with {master.process.returncode}; restarting")
                assert self.redis_cluster is not None
                self.redis_cluster.nodes[i] = start_node(
                    master.workdir,
                    master.port,
                    persistent=True,
                    log_file=self.logs / f"redis-{i}.log",
                    password=self._redis_args["password"],
                    acl_users=self._redis_args["acl_users"],
                )  # its nodes.conf and AOF: it takes its slots and keys back
                changed = True
        for server in (self.nats, self.redis):
            if server is not None and server.process.poll() is not None:
                self._log(f"{server.name} exited with {server.process.returncode}; restarting")
                if server.name == "nats":
                    restarted = start_nats(server.workdir, port=server.port, **self._nats_args)
                else:
                    restarted = start_redis(server.workdir, port=server.port, **self._redis_args)
                setattr(self, server.name, restarted)
                changed = True  # run.json lists the new pid
        for child in self.children.values():
            if child.alive() or self._stopping:
                continue
            if child.next_start == 0.0:
                code = child.process.returncode if child.process else None
                quick = time.monotonic() - child.started_at < QUICK_EXIT_S
                child.quick_exits = child.quick_exits + 1 if quick else 0
                if child.quick_exits >= 2 and child.name in MOVABLE and not port_free(child.port):
                    moved = free_port()
                    self._log(f"{child.name}'s port {child.port} is taken; moving it to {moved}")
                    child.port = moved
                    child.env["AUTOPAY_HTTP_PORT"] = str(moved)
                    child.quick_exits = 0
                    changed = True
                self._log(f"{child.name} exited with {code}; restarting in {child.backoff:.1f}s")
                child.next_start = time.monotonic() + child.backoff
                child.backoff = min(child.backoff * 2, 10.0)
            elif time.monotonic() >= child.next_start:
                child.start()
                child.restarts += 1
                child.next_start = 0.0
                changed = True
        for child in self.children.values():
            if child.alive() and child.backoff > 0.5 and self._ready(child):
                child.backoff = 0.5
        if changed:
            run = read_json(self.state_dir / RUN_FILE)
            self._write_run(run)
            stack_file = self.state_dir / STACK_FILE
            if self.cluster is not None and stack_file.exists():  # the nodes' new pids
                write_json(stack_file, read_json(stack_file) | {"nats_nodes": self._nats_nodes()})
            if self.redis_cluster is not None and stack_file.exists():
                nodes = {"redis_nodes": self._redis_nodes()}
                write_json(stack_file, read_json(stack_file) | nodes, private=True)

    def _nats_pids(self) -> list[int]:
        if self.cluster is not None:
            return [node.pid for node in self.cluster.nodes if node.pid is not None]
        return [self.nats.process.pid] if self.nats is not None else []

    def _write_run(self, run: dict) -> None:
        run["pids"] = {name: child.pid for name, child in self.children.items()}
        for name, child in self.children.items():
            if name in MOVABLE:
                run[f"{name}_port"] = child.port
        run["nats_pids"] = self._nats_pids()
        redis = [self.redis.process.pid] if self.redis is not None else []
        if self.redis_cluster is not None:
            redis = [node.process.pid for node in self.redis_cluster.nodes]
        run["redis_pids"] = redis
        run["infra_pids"] = [*run["nats_pids"], *redis]
        run["restarts"] = {name: child.restarts for name, child in self.children.items()}
        write_json(self.state_dir / RUN_FILE, run, private=True)

    def _ready(self, child: Child) -> bool:
        """The child runs and its port answers ready (a port held by another process does not
        make a dead child ready)."""
        if not child.alive():
            return False
        with contextlib.suppress(httpx.HTTPError):
            return (
                httpx.get(f"http://127.0.0.1:{child.port}/readyz", timeout=1.0).status_code == 200
            )
        return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = set(SERVICES)
        while pending and not self._stopping:
            pending = {name for name in pending if not self._ready(self.children[name])}
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"services not ready: {sorted(pending)}")
            self._restart_dead()
            time.sleep(0.2)

    def _stop_everything(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()
        for server in (self.redis, self.redis_cluster, self.nats, self.cluster):
            if server is not None:
                server.stop()
        (self.state_dir / STACK_FILE).unlink(missing_ok=True)

    def _log(self, message: str) -> None:
        print(f"[autopay dev] {message}", file=sys.stderr, flush=True)


def start_detached(
    state_dir: Path,
    timeout: float = READY_TIMEOUT_S + 30,
    nats_cluster: int | None = None,
    redis_cluster: int | None = None,
) -> dict:
    """Start the supervisor in the background; return stack.json once everything is ready."""
    state_dir = state_dir.resolve()
    nats_cluster_size(state_dir, nats_cluster)  # a size this state dir cannot take fails here
    redis_cluster_size(state_dir, redis_cluster)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "logs").mkdir(exist_ok=True)
    stack = state_dir / STACK_FILE
    stack.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "autopay_cli.main", "dev", "up", "--state-dir", str(state_dir)]
    if nats_cluster is not None:
        argv += ["--nats-cluster", str(nats_cluster)]
    if redis_cluster is not None:
        argv += ["--redis-cluster", str(redis_cluster)]
    with open(state_dir / "logs" / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.exists():
            return read_json(stack)
        if proc.poll() is not None:
            raise RuntimeError(
                f"the dev stack exited with {proc.returncode}; see {state_dir / 'logs'}"
            )
        time.sleep(0.1)
    proc.terminate()
    raise TimeoutError(f"the dev stack was not ready in {timeout:.0f}s; see {state_dir / 'logs'}")


def stop(state_dir: Path, timeout: float = 30.0) -> bool:
    """Stop a detached stack; also kills leftovers if its supervisor died. True if one ran."""
    path = state_dir / RUN_FILE
    if not path.exists():
        return False
    run = read_json(path)
    pid = run.get("supervisor_pid")
    stopped = False
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        stopped = True
    for child_pid in [*(run.get("pids") or {}).values(), *run.get("infra_pids", [])]:
        if child_pid and _alive(child_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, signal.SIGKILL)
    return stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True
