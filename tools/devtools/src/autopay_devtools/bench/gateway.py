"""Create-payment throughput of one gateway worker against a bare FastAPI endpoint (targets:
`create_payment_ratio` ≥ 0.5, `create_payment_p99_ms` ≤ 20).

Own NATS (streams provisioned) and Redis; a merchant with a large subscription, its rate limit
lifted and several connected cards; `python -m autopay_gateway` (uvloop) as one process; a bare
FastAPI app served the same way (`autopay_runtime.health.serve`: uvicorn, uvloop, no access log).
The load comes from a separate process (so it does not share a server's event loop): a small
asyncio client speaking raw HTTP/1.1 over keep-alive connections.

- Throughput: closed loop, `CONNECTIONS` connections each sending its next request as soon as
  the previous answer arrives, for `SECONDS` after a warm-up; the same for both servers, in
  `ROUNDS` alternating rounds (bare, gateway, bare, ...), medians reported: the machine is
  shared, and alternating spreads its noise over both.
- Latency: open loop at half the measured gateway throughput (requests scheduled at a constant
  rate; latency counted from the scheduled time, so queueing is not hidden).

Every create-payment uses a distinct (card, amount), so none is refused; any answer other than
200 fails the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

from autopay_devtools.bench import stop_processes

CONNECTIONS = int(os.environ.get("AUTOPAY_BENCH_GATEWAY_CONNECTIONS", "32"))
SECONDS = float(os.environ.get("AUTOPAY_BENCH_GATEWAY_SECONDS", "5"))
ROUNDS = int(os.environ.get("AUTOPAY_BENCH_GATEWAY_ROUNDS", "3"))
WARMUP_SECONDS = 2.0
CARDS = [(f"{6400 + n}", f"bench.card{n}@gmail.com") for n in range(8)]
PATH = "/api/create-payment"


def _log(message: str) -> None:
    print(f"[bench gateway] {message}", file=sys.stderr, flush=True)


# --- the bare baseline ---------------------------------------------------------------------


def bare_app() -> FastAPI:
    """The smallest FastAPI JSON endpoint of the same shape: read a JSON body, answer JSON."""
    app = FastAPI()

    @app.post(PATH)
    async def create_payment(request: Request) -> dict[str, Any]:
        data = await request.json()
        return {"success": True, "order_id": str(data["amount"])}

    return app


# --- the load generator (runs in its own process) --------------------------------------------


def _request(api_key: str, n: int, base: int) -> bytes:
    card_last4, gmail = CARDS[n % len(CARDS)]
    body = json.dumps(
        {"amount": base + n // len(CARDS), "card_last4": card_last4, "gmail": gmail}
    ).encode()
    head = (
        f"POST {PATH} HTTP/1.1\r\nhost: bench\r\nx-api-key: {api_key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def call(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status


async def _connect(port: int, count: int) -> list[_Connection]:
    pairs = [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]
    return [_Connection(r, w) for r, w in pairs]


class _Counter:
    def __init__(self, base: int) -> None:
        self.next = 0
        self.base = base


async def _closed_loop(port: int, api_key: str, base: int, seconds: float) -> dict[str, Any]:
    connections = await _connect(port, CONNECTIONS)
    counter = _Counter(base)
    statuses: dict[int, int] = {}
    done = 0
    measuring = False
    stop_at = time.perf_counter() + WARMUP_SECONDS + seconds

    async def worker(conn: _Connection) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            n = counter.next
            counter.next += 1
            status = await conn.call(_request(api_key, n, base))
            statuses[status] = statuses.get(status, 0) + 1
            if measuring:
                done += 1

    tasks = [asyncio.create_task(worker(c)) for c in connections]
    await asyncio.sleep(WARMUP_SECONDS)
    measuring, started = True, time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for conn in connections:
        conn.writer.close()
    return {"rps": done / elapsed, "statuses": statuses, "sent": counter.next}


async def _open_loop(port: int, api_key: str, base: int, rate: float, seconds: float) -> dict:
    pool: asyncio.Queue[_Connection] = asyncio.Queue()
    connections = await _connect(port, max(CONNECTIONS, 64))
    for conn in connections:
        pool.put_nowait(conn)
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    total = int(rate * (WARMUP_SECONDS + seconds))
    warmup = int(rate * WARMUP_SECONDS)

    async def one(n: int, scheduled: float) -> None:
        conn = await pool.get()
        try:
            status = await conn.call(_request(api_key, n, base))
        finally:
            pool.put_nowait(conn)
        statuses[status] = statuses.get(status, 0) + 1
        if n >= warmup:
            latencies.append((time.perf_counter() - scheduled) * 1000)

    tasks = []
    started = time.perf_counter()
    for n in range(total):
        scheduled = started + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, scheduled)))
    await asyncio.gather(*tasks)
    for conn in connections:
        conn.writer.close()
    return {"latencies_ms": latencies, "statuses": statuses, "sent": total}


def _load_main(args: list[str]) -> None:
    mode, port, api_key, base, seconds = args[0], int(args[1]), args[2], int(args[3]), args[4]
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    if mode == "closed":
        result = asyncio.run(_closed_loop(port, api_key, base, float(seconds)))
    else:
        rate = float(args[5])
        result = asyncio.run(_open_loop(port, api_key, base, rate, float(seconds)))
    print(json.dumps(result))


def _load(mode: str, port: int, api_key: str, base: int, *extra: object) -> dict[str, Any]:
    command = [sys.executable, "-m", "autopay_devtools.bench.gateway", "load", mode, str(port)]
    command += [api_key, str(base), str(SECONDS), *map(str, extra)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["statuses"] = {int(k): v for k, v in result["statuses"].items()}
    return result


def _require_ok(what: str, result: dict[str, Any]) -> None:
    refused = {k: v for k, v in result["statuses"].items() if k != 200}
    if refused:
        raise RuntimeError(f"{what}: answers other than 200: {refused}")


def closed_loop_rps(what: str, port: int, api_key: str, base: int) -> float:
    """One closed-loop round (`CONNECTIONS` connections, `SECONDS` after the warm-up) against
    the server on `port`: its req/s. Amounts start at `base`, so rounds that use distinct bases
    never repeat a (card, amount); any answer but 200 fails."""
    result = _load("closed", port, api_key, base)
    _require_ok(what, result)
    return result["rps"]


# --- setup -------------------------------------------------------------------------------------


async def provision(nats_url: str, redis_url: str, namespace: str, prefix: str, fernet: str):
    """Streams of `namespace`; a merchant (large subscription, no rate limit) with `CARDS`
    connected under `prefix`. Returns its API key. `redis_url` may be a `redis+cluster://` one."""
    import nats

    from autopay_contracts import Namespace, provision_streams
    from autopay_runtime.connections import open_redis
    from autopay_store.accounts import Accounts
    from autopay_store.keys import Keys
    from autopay_store.secrets import SecretBox

    nc = await nats.connect(nats_url)
    try:
        await provision_streams(nc.jetstream(), Namespace(namespace))
    finally:
        await nc.close()
    redis = open_redis(redis_url)
    try:
        accounts = Accounts(redis, Keys(prefix), SecretBox(fernet))
        created = await accounts.create_merchant(
            "bench", max_payments=100_000_000, days=30, now=datetime.now(UTC)
        )
        merchant_id = created.merchant.merchant_id
        await accounts.set_rate_limit(merchant_id, per_s=1_000_000, burst=1_000_000)
        for card_last4, gmail in CARDS:
            await accounts.add_card(merchant_id, card_last4, gmail)
        return created.api_key
    finally:
        await redis.aclose()


def _wait_ready(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own http:// URL
            if response.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    from autopay_testing.servers import die_with_parent

    with open(log, "ab") as out:
        return subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )


def start_gateway(
    nats_url: str, redis_url: str, namespace: str, prefix: str, fernet: str, log: Path
) -> tuple[subprocess.Popen, int]:
    """`python -m autopay_gateway` on free ports against these servers, once ready: the
    process and its HTTP port. A `redis+cluster://` URL makes it a Cluster client."""
    from autopay_testing.servers import free_port

    port = free_port()
    env = dict(os.environ)
    env.update(
        AUTOPAY_NATS_URL=nats_url,
        AUTOPAY_REDIS_URL=redis_url,
        AUTOPAY_NAMESPACE=namespace,
        AUTOPAY_REDIS_PREFIX=prefix,
        AUTOPAY_SECRET_KEYS=fernet,
        AUTOPAY_HTTP_PORT=str(port),
        AUTOPAY_METRICS_PORT=str(free_port()),
        AUTOPAY_LOG_LEVEL="INFO",
    )
    process = _start([sys.executable, "-m", "autopay_gateway"], env, log)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", process)
    except BaseException:
        stop_processes([process], 10)
        _log(log.read_text()[-2000:])
        raise
    return process, port


def _bare_main(port: int) -> None:
    from autopay_runtime.health import serve

    serve(bare_app(), "127.0.0.1", port)


def bare_baseline() -> float:
    """`bare_fastapi_rps` alone (median of `ROUNDS` closed-loop rounds), for a run whose
    ratios need the yardstick without the gateway benchmark."""
    from autopay_testing.servers import free_port

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="autopay-bench-bare-") as tmp:
        bare = _start(
            [sys.executable, "-m", "autopay_devtools.bench.gateway", "bare", str(port)],
            dict(os.environ),
            Path(tmp) / "bare.log",
        )
        try:
            _wait_ready(f"http://127.0.0.1:{port}/docs", bare)
            rounds = [closed_loop_rps("bare", port, "bare", 1_000_000) for _ in range(ROUNDS)]
        finally:
            stop_processes([bare], 10)
    _log(f"bare {statistics.median(rounds):.0f} req/s (rounds {[round(r) for r in rounds]})")
    return round(statistics.median(rounds), 1)


def run() -> dict:
    from autopay_devtools.bench import percentile
    from autopay_store.secrets import SecretBox
    from autopay_testing.servers import free_port, start_nats, start_redis

    namespace, prefix, fernet = "benchgw", "benchgw", SecretBox.generate_key()
    with tempfile.TemporaryDirectory(prefix="autopay-bench-gateway-") as tmp:
        work = Path(tmp)
        with start_nats(work / "nats") as nats_server, start_redis(work / "redis") as redis_server:
            api_key = asyncio.run(
                provision(nats_server.url, redis_server.url, namespace, prefix, fernet)
            )
            bare_port = free_port()
            bare = _start(
                [sys.executable, "-m", "autopay_devtools.bench.gateway", "bare", str(bare_port)],
                dict(os.environ),
                work / "bare.log",
            )
            gateway = None
            try:
                servers = (nats_server.url, redis_server.url, namespace, prefix, fernet)
                gateway, gateway_port = start_gateway(*servers, work / "gateway.log")
                _wait_ready(f"http://127.0.0.1:{bare_port}/docs", bare)
                bare_rps, gateway_rps = [], []
                for round_ in range(ROUNDS):
                    bare_rps.append(closed_loop_rps("bare", bare_port, api_key, 1_000_000))
                    base = 10_000_000 * (round_ + 1)
                    gateway_rps.append(
                        closed_loop_rps("gateway closed loop", gateway_port, api_key, base)
                    )
                    _log(f"bare {bare_rps[-1]:.0f} req/s, gateway {gateway_rps[-1]:.0f} req/s")
                bare_median, gateway_median = (
                    statistics.median(bare_rps),
                    statistics.median(gateway_rps),
                )
                rate = gateway_median / 2
                open_result = _load("open", gateway_port, api_key, 90_000_000, rate)
                _require_ok("gateway open loop", open_result)
            finally:
                stop_processes([bare], 10)
                if gateway is not None:
                    stop_processes([gateway], 10)
                    if gateway.returncode not in (0, -15):
                        _log((work / "gateway.log").read_text()[-2000:])
    latencies = open_result["latencies_ms"]
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    _log(f"at {rate:.0f} req/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({len(latencies)} requests)")
    return {
        "create_payment_ratio": round(gateway_median / bare_median, 3),
        "create_payment_rps": round(gateway_median, 1),
        "bare_fastapi_rps": round(bare_median, 1),
        "create_payment_p50_ms": round(p50, 2),
        "create_payment_p99_ms": round(p99, 2),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["load"]:
        _load_main(sys.argv[2:])
    elif sys.argv[1:2] == ["bare"]:
        _bare_main(int(sys.argv[2]))
    else:
        print(json.dumps(run()))
