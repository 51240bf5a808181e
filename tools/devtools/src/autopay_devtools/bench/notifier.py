"""Webhook throughput of one notifier process, and what one black-holed endpoint costs it
(targets: `notifier_webhooks_per_s` ≥ 1 000, `notifier_blackhole_cost` ≤ 0.10).

Started here and torn down at the end: nats-server, redis-server, a receiver process (asyncio
on uvloop, raw HTTP/1.1, answers 200 at once) listening on `MERCHANTS` ports — one merchant
(created with `Accounts.create_merchant`, so each has its own webhook secret) per port. The
notifier keeps one lane and one connection pool per `host:port`, so real traffic to many
merchants is modelled by many ports, not by one.

Each run gets fresh streams and a fresh Redis prefix. `ORDERS` `OrderPaid` events are
published *before* `python -m autopay_notifier` (uvloop, INFO logs) starts, so the notifier
works through a backlog; throughput = deliveries / (last arrival − first arrival), timed at
the receiver. Every order must arrive exactly once with a valid Standard Webhooks signature of
its merchant, or the benchmark fails.

`_run` can also start several notifier processes on the same durable consumer (`DURABLE`);
scale.py measures one against two that way, with the same checks.

Run `blackhole`: the same fast orders plus 1 in 10 orders to one more endpoint that accepts
TCP and never reads or answers (each of its attempts ends at the 15 s timeout). Its fast
throughput is measured the same way; `notifier_blackhole_cost` = 1 − fast_with_blackhole /
fast_baseline (medians over `ROUNDS` alternating pairs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats
from standardwebhooks import Webhook

from autopay_contracts import Namespace, Order, OrderPaid, provision_streams
from autopay_devtools.bench import stop_processes
from autopay_runtime.connections import redis_client
from autopay_store.accounts import Accounts
from autopay_store.keys import Keys
from autopay_store.secrets import SecretBox
from autopay_testing.servers import free_port, start_nats, start_redis, wait_for_port

ORDERS = int(os.environ.get("AUTOPAY_BENCH_NOTIFIER_ORDERS", "10000"))
MERCHANTS = int(os.environ.get("AUTOPAY_BENCH_NOTIFIER_MERCHANTS", "16"))
ROUNDS = int(os.environ.get("AUTOPAY_BENCH_NOTIFIER_ROUNDS", "3"))
BLACKHOLE_SHARE = 0.10
RUN_TIMEOUT_S = 90.0
DURABLE = "notifier"


def _log(message: str) -> None:
    print(f"[bench notifier] {message}", file=sys.stderr, flush=True)


# --- the receiver process -----------------------------------------------------------------

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def _serve_receivers(count: int) -> None:
    """Entry point of the receiver process: `count` fast ports, one black hole, one control
    port (line protocol: `count` → fast deliveries so far; `dump` → every request as JSON)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(_receivers(count))


async def _receivers(count: int) -> None:
    loop = asyncio.get_running_loop()
    seen: list[tuple[int, float, str, str, str, bytes]] = []

    class Fast(asyncio.Protocol):
        def __init__(self) -> None:
            self.buf = b""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.port = transport.get_extra_info("sockname")[1]

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                headers = {}
                for line in self.buf[:end].split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip().decode("latin-1")
                length = int(headers.get(b"content-length", "0"))
                if len(self.buf) < end + 4 + length:
                    return
                body = self.buf[end + 4 : end + 4 + length]
                self.buf = self.buf[end + 4 + length :]
                seen.append(
                    (
                        self.port,
                        time.monotonic(),
                        headers.get(b"webhook-id", ""),
                        headers.get(b"webhook-timestamp", ""),
                        headers.get(b"webhook-signature", ""),
                        body,
                    )
                )
                self.transport.write(_OK)  # type: ignore[attr-defined]

    class Hole(asyncio.Protocol):
        connections = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            Hole.connections += 1
            transport.pause_reading()  # type: ignore[attr-defined]

    servers = [await loop.create_server(Fast, "127.0.0.1", 0) for _ in range(count)]
    ports = [server.sockets[0].getsockname()[1] for server in servers]
    hole = await loop.create_server(Hole, "127.0.0.1", 0)

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            command = line.strip()
            if command == b"count":
                writer.write(f"{len(seen)} {Hole.connections}\n".encode())
            elif command == b"dump":
                rows = [[p, t, i, ts, s, b.decode()] for p, t, i, ts, s, b in seen]
                writer.write(json.dumps(rows).encode() + b"\n")
            elif command == b"reset":
                seen.clear()
                Hole.connections = 0
                writer.write(b"ok\n")
            await writer.drain()
        writer.close()

    ctl = await asyncio.start_server(control, "127.0.0.1", 0)
    print(
        json.dumps(
            {
                "ports": ports,
                "hole": hole.sockets[0].getsockname()[1],
                "control": ctl.sockets[0].getsockname()[1],
            }
        ),
        flush=True,
    )
    await asyncio.Event().wait()


class _Receivers:
    def __init__(self, count: int) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "autopay_devtools.bench.notifier",
                "--receivers",
                str(count),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        info = json.loads(self.process.stdout.readline())
        self.ports: list[int] = info["ports"]
        self.hole: int = info["hole"]
        self.control = socket.create_connection(("127.0.0.1", info["control"]))
        self.lines = self.control.makefile("rb")

    def ask(self, command: str) -> bytes:
        self.control.sendall(command.encode() + b"\n")
        return self.lines.readline()

    def count(self) -> tuple[int, int]:
        fast, hole = self.ask("count").split()
        return int(fast), int(hole)

    def dump(self) -> list[list]:
        return json.loads(self.ask("dump"))

    def stop(self) -> None:
        self.control.close()
        self.process.terminate()
        self.process.wait(10)


# --- one run ------------------------------------------------------------------------------


def _orders(
    merchants: list[str], ports: list[int], hole: int | None, count: int | None = None
) -> list[OrderPaid]:
    """`count` (default `ORDERS`) paid orders to the fast ports, plus with `hole` one in ten
    more to the black hole."""
    now = datetime.now(UTC).replace(microsecond=0)
    events = []
    fast = 0
    count = ORDERS if count is None else count
    total = count + (round(count * BLACKHOLE_SHARE / (1 - BLACKHOLE_SHARE)) if hole else 0)
    for n in range(total):
        if hole is not None and n % round(1 / BLACKHOLE_SHARE) == 0:
            merchant, port = merchants[0], hole
        else:
            slot = fast % len(ports)
            merchant, port = merchants[slot], ports[slot]
            fast += 1
        order = Order(
            order_id=f"{100000 + n}",
            merchant_id=merchant,
            mailbox_id="mbx1",
            gmail="bench.kassa@gmail.com",
            card_last4="6412",
            amount_tiyin=5_000_000 + n * 100,
            created_at=now - timedelta(minutes=1),
            expires_at=now + timedelta(minutes=4),
            client_user_id=str(n),
            client_user_data={"plan": "premium"},
            webhook_url=f"http://127.0.0.1:{port}/hook",
        )
        events.append(OrderPaid(order=order, credit_id=f"c-{n}", paid_at=now))
    return events


async def _prepare(
    nats_url: str, redis_url: str, ns: Namespace, prefix: str, box: SecretBox, events_for
) -> tuple[list[OrderPaid], dict[str, str]]:
    nc = await nats.connect(nats_url)
    redis = redis_client(redis_url, "bench")
    try:
        js = nc.jetstream()
        await provision_streams(js, ns)
        accounts = Accounts(redis, Keys(prefix), box)
        now = datetime.now(UTC)
        secrets: dict[str, str] = {}
        for i in range(MERCHANTS):
            new = await accounts.create_merchant(f"bench shop {i}", now=now)
            secrets[new.merchant.merchant_id] = new.webhook_secret
        events = events_for(list(secrets))
        for start in range(0, len(events), 500):
            await asyncio.gather(
                *(
                    js.publish(e.subject(ns), e.to_bytes(), headers=e.headers())
                    for e in events[start : start + 500]
                )
            )
        return events, secrets
    finally:
        await nc.close()
        await redis.aclose()


def _run(
    nats_url: str,
    redis_url: str,
    receivers: _Receivers,
    workdir: Path,
    with_hole: bool,
    processes: int = 1,
    orders: int | None = None,
) -> float:
    """One round: `orders` (default `ORDERS`) paid orders published, then `processes` notifiers
    started on the same durable; fast webhooks per second, timed at the receiver. Every
    webhook is checked once all the notifiers have stopped: one missing, sent twice or
    badly signed raises."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, not {processes}")
    run_id = uuid.uuid4().hex[:8]
    ns = Namespace(f"bench{run_id}")
    prefix = f"bn{run_id}"
    key = SecretBox.generate_key()
    hole = receivers.hole if with_hole else None
    receivers.ask("reset")
    events, secrets = asyncio.run(
        _prepare(
            nats_url,
            redis_url,
            ns,
            prefix,
            SecretBox(key),
            lambda merchants: _orders(merchants, receivers.ports, hole, orders),
        )
    )
    hole_url = f"http://127.0.0.1:{hole}/hook"
    fast_events = [e for e in events if e.order.webhook_url != hole_url]
    env = {
        **os.environ,
        "AUTOPAY_NATS_URL": nats_url,
        "AUTOPAY_REDIS_URL": redis_url,
        "AUTOPAY_NAMESPACE": ns.root,
        "AUTOPAY_REDIS_PREFIX": prefix,
        "AUTOPAY_SECRET_KEYS": key,
        "AUTOPAY_ALLOW_HTTP_LOOPBACK": "true",
        "AUTOPAY_HTTP_HOST": "127.0.0.1",
        "AUTOPAY_SHUTDOWN_GRACE_S": "1",
        "AUTOPAY_DURABLE": DURABLE,
    }
    notifiers: list[tuple[subprocess.Popen, int, Path]] = []
    profilers: list[subprocess.Popen] = []
    try:
        names = [run_id if index == 0 else f"{run_id}-{index}" for index in range(processes)]
        for name in names:
            notifiers.append(_start_notifier(env, workdir / f"notifier-{name}.log"))
        for _, http_port, _ in notifiers:
            wait_for_port(http_port, timeout=30)
        for name, (notifier, _, _) in zip(names, notifiers, strict=True):
            profiler = _profiler(notifier.pid, name)
            if profiler is not None:
                profilers.append(profiler)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while (got := receivers.count())[0] < len(fast_events):
            for notifier, _, log_path in notifiers:
                if notifier.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(
                        f"notifier {notifier.pid} exited ({notifier.returncode}):\n{tail}"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {got[0]}/{len(fast_events)} webhooks in time")
            time.sleep(0.05)
        time.sleep(0.3)  # let any duplicate show itself before the check
        hole_connections = receivers.count()[1]
        if os.environ.get("AUTOPAY_BENCH_NOTIFIER_TRACE"):
            for _, http_port, _ in notifiers:
                _log_metrics(http_port)
    finally:
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(30)
        stop_processes([notifier for notifier, _, _ in notifiers])
    rows = receivers.dump()  # once every notifier has stopped: nothing more can arrive
    _verify(rows, fast_events, secrets)
    if with_hole and hole_connections == 0:
        raise RuntimeError("the black hole was never dialled")
    times = [r[1] for r in rows]
    per_s = (len(rows) - 1) / (max(times) - min(times))
    if os.environ.get("AUTOPAY_BENCH_NOTIFIER_TRACE"):
        start = min(times)
        buckets: dict[int, int] = {}
        for t in times:
            buckets[int(t - start)] = buckets.get(int(t - start), 0) + 1
        _log(f"per second: {[buckets.get(i, 0) for i in range(max(buckets) + 1)]}")
    _log(
        f"{'blackhole' if with_hole else 'baseline '}: {len(rows)} fast webhooks, "
        f"{per_s:.0f}/s"
        + (f", black hole saw {hole_connections} connections" if with_hole else "")
        + (f", {processes} processes" if processes > 1 else "")
    )
    return per_s


def _start_notifier(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, int, Path]:
    """`python -m autopay_notifier` with `env` on a port of its own; the process, the port and
    its log."""
    http_port = free_port()
    with open(log_path, "wb") as out:
        notifier = subprocess.Popen(
            [sys.executable, "-m", "autopay_notifier"],
            env={**env, "AUTOPAY_HTTP_PORT": str(http_port)},
            stdout=out,
            stderr=out,
        )
    return notifier, http_port, log_path


def _log_metrics(http_port: int) -> None:
    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
    _log(
        "metrics: "
        + "; ".join(
            line
            for line in text.splitlines()
            if line.startswith(("autopay_notifier_deferred_total", "autopay_notifier_attempts"))
            and not line.endswith(" 0.0")  # the pre-initialised series nothing reached
        )
    )


def _profiler(pid: int, run_id: str) -> subprocess.Popen | None:
    """`AUTOPAY_BENCH_NOTIFIER_PROFILE=DIR`: py-spy samples the notifier into DIR/<run>.txt."""
    where = os.environ.get("AUTOPAY_BENCH_NOTIFIER_PROFILE")
    if not where:
        return None
    args = ["py-spy", "record", "--pid", str(pid), "-f", "raw", "-o", f"{where}/{run_id}.txt"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _verify(rows: list[list], events: list[OrderPaid], secrets: dict[str, str]) -> None:
    expected = {e.event_id: e for e in events}
    ids = [r[2] for r in rows]
    if len(ids) != len(set(ids)):
        raise RuntimeError(f"{len(ids) - len(set(ids))} webhooks were delivered twice")
    if set(ids) != set(expected):
        raise RuntimeError("the delivered webhook ids differ from the published orders")
    webhooks = {m: Webhook(s) for m, s in secrets.items()}
    for _port, _t, msg_id, ts, signature, body in rows:
        event = expected[msg_id]
        headers = {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": signature}
        payload = webhooks[event.order.merchant_id].verify(body, headers)
        if payload["order_id"] != event.order.order_id:
            raise RuntimeError(f"webhook {msg_id} carried order {payload['order_id']}")


def run() -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="autopay-bench-notifier-"))
    nats_server = start_nats(workdir / "nats")
    redis_server = start_redis(workdir / "redis")
    receivers = _Receivers(MERCHANTS)
    baseline: list[float] = []
    with_hole: list[float] = []
    try:
        _log(f"{ORDERS} orders over {MERCHANTS} merchants/ports, {ROUNDS} rounds")
        for _ in range(ROUNDS):
            baseline.append(_run(nats_server.url, redis_server.url, receivers, workdir, False))
            with_hole.append(_run(nats_server.url, redis_server.url, receivers, workdir, True))
    finally:
        with contextlib.suppress(Exception):
            receivers.stop()
        redis_server.stop()
        nats_server.stop()
        if not os.environ.get("AUTOPAY_BENCH_NOTIFIER_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
    fast = statistics.median(baseline)
    hole = statistics.median(with_hole)
    return {
        "notifier_webhooks_per_s": round(fast, 1),
        "notifier_blackhole_cost": round(max(0.0, 1 - hole / fast), 3),
        "notifier_webhooks_per_s_with_blackhole": round(hole, 1),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--receivers"]:
        _serve_receivers(int(sys.argv[2]))
    else:
        print(json.dumps(run()))
