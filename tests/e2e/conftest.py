"""The whole system as separate processes: `autopay dev up --detach`, a webhook receiver.

`AUTOPAY_E2E_NATS_CLUSTER=3` runs every stack of the suite on a local 3-node NATS JetStream
cluster (`autopay dev up --nats-cluster 3`, streams at R3) instead of one server, and
`AUTOPAY_E2E_REDIS_CLUSTER=3` on a local 3-master Redis Cluster (`--redis-cluster 3`);
`make test-cluster` sets both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

AUTOPAY = [sys.executable, "-m", "autopay_cli.main"]


def nats_cluster_size() -> int | None:
    """`AUTOPAY_E2E_NATS_CLUSTER`: the NATS nodes of the suite's stacks (unset: one server)."""
    value = os.environ.get("AUTOPAY_E2E_NATS_CLUSTER", "").strip()
    return int(value) if value else None


def redis_cluster_size() -> int | None:
    """`AUTOPAY_E2E_REDIS_CLUSTER`: the Redis masters of the suite's stacks (unset: one)."""
    value = os.environ.get("AUTOPAY_E2E_REDIS_CLUSTER", "").strip()
    return int(value) if value else None


def dev_up_args(state_dir: Path, nats_cluster: int | None = None) -> list[str]:
    """`autopay dev up --detach` for a test's own state dir, on the suite's NATS (or the
    `nats_cluster` nodes a test asks for) and the suite's Redis."""
    args = ["dev", "up", "--detach", "--state-dir", str(state_dir)]
    size = nats_cluster or nats_cluster_size()
    if size:
        args += ["--nats-cluster", str(size)]
    if masters := redis_cluster_size():
        args += ["--redis-cluster", str(masters)]
    return args


def autopay(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> str:
    result = subprocess.run(
        [*AUTOPAY, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"autopay {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class Stack:
    def __init__(self, state_dir: Path, info: dict) -> None:
        self.state_dir = state_dir
        self.info = info
        self.expected_violation = "\0"
        """A user whose violations a test provokes on purpose (e.g. an integrator's)."""
        self.http = httpx.Client(
            base_url=info["gateway_url"], headers={"x-api-key": info["api_key"]}, timeout=10
        )

    def post(self, path: str, body: dict) -> httpx.Response:
        return self.http.post(path, json=body)

    def send_credit(self, amount: int) -> None:
        autopay("dev", "send-credit", "--state-dir", str(self.state_dir), "--amount", str(amount))

    def run_file(self) -> dict:
        return json.loads((self.state_dir / "run.json").read_text())

    def nats_connect_options(self) -> dict:
        """`nats.connect(**options)` for the stack's NATS (a cluster's every node), as admin."""
        from autopay_runtime.settings import nats_connect_options

        return nats_connect_options(self.info["nats_url"])

    def nats_log_lines(self) -> list[str]:
        """Every NATS server's log (`nats.log`, or a cluster's `nats-1.log`, ...)."""
        logs = sorted((self.state_dir / "logs").glob("nats*.log"))
        return [line for log in logs for line in log.read_text().splitlines()]

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + p.read_text()[-3000:]
            for p in (self.state_dir / "logs").glob("*.log")
        )


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    return {}


@pytest.fixture(scope="module")
def stack_nats_cluster() -> int | None:
    """The NATS nodes of the module's stack: the suite's (`AUTOPAY_E2E_NATS_CLUSTER`) unless a
    module needs a cluster whatever the suite runs on."""
    return None


@pytest.fixture(scope="module")
def stack_args() -> list[str]:
    """More `autopay dev up` options for the module's stack."""
    return []


@pytest.fixture(scope="module")
def stack(tmp_path_factory, stack_env, stack_nats_cluster, stack_args) -> Iterator[Stack]:
    state_dir = tmp_path_factory.mktemp("autopay-stack")
    out = autopay(*dev_up_args(state_dir, stack_nats_cluster), *stack_args, env=stack_env)
    running = Stack(state_dir, json.loads(out.strip().splitlines()[-1]))
    try:
        yield running
    finally:
        running.http.close()
        autopay("dev", "down", "--state-dir", str(state_dir), timeout=60)
    # Every service ran under its own NATS user: none may have needed more than it is given.
    violations = [
        line
        for line in running.nats_log_lines()
        if "Violation" in line and running.expected_violation not in line
    ]
    assert violations == [], violations[:5]


class Receiver:
    """A local webhook endpoint that records every request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                )
                self.send_response(receiver.status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def for_order(self, order_id: str) -> list[dict]:
        return [r for r in self.requests if json.loads(r["body"]).get("order_id") == order_id]

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recv = Receiver()
    try:
        yield recv
    finally:
        recv.close()
