"""The whole stack under steady load (targets: `e2e_load_p99_ms` ≤ 50 with `e2e_load_errors` = 0).

A detached dev stack in a temporary state dir; `MERCHANTS` merchants sharing `MAILBOXES`
mailboxes (each mailbox one merchant's) and `CARDS` cards (spread evenly over the mailboxes);
one asyncio webhook receiver that verifies every request's signature with its merchant's secret.
Payments start on a fixed schedule, `RATE` per second (open loop: a slow answer does not slow the
offered load), first `WARMUP_S` seconds not counted, then `SECONDS` measured. Each payment:
create-payment over the API (server-side unique amount on a random card), APPEND its bank mail
to that card's mailbox (one kept-open IMAP connection per mailbox), wait for its webhook.

Figures: `e2e_load_p50_ms` / `e2e_load_p99_ms`, from the APPEND's OK to the webhook's arrival (as
`e2e_p50_ms`, but under load); `e2e_load_errors`, payments that failed anywhere (create refused,
APPEND refused, no webhook within `WEBHOOK_TIMEOUT_S`, a signature that does not verify, a
payload that is not this order paid for its amount), warm-up included. Also the create's and the
whole payment's (create sent → webhook) p99, the schedule's lag, and the per-payment series
(`e2e_load_series.json`) with its plot (`e2e_load.png`, percentiles per second) in the run's
output directory. `python -m autopay_devtools.bench.load plot SERIES.json OUT.png` redraws one.

Before the full rate, rising steps (`STEPS`, `STEP_S` each) find `e2e_load_sustained_rate_per_s`:
the highest rate whose p99 stayed within 50 ms with no error, the figure that says what a
machine too small for 100 payments/s does hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp
import aioimaplib
import nats
import psutil
from nats.aio.client import Client as NatsClient

from autopay_bankmail.synth import uzcard_credit_email
from autopay_cli.config import RUN_FILE, load_settings, read_json
from autopay_cli.operations import Operator
from autopay_contracts import CreditReceived, Namespace
from autopay_contracts.local_time import TASHKENT
from autopay_devtools.bench import (
    Profile,
    cpu_seconds,
    dev_stack,
    output_dir,
    percentile,
    process_kind,
    profiling,
)
from autopay_devtools.bench.receiver import Arrival, WebhookReceiver
from autopay_devtools.mailbox import logged_in

RATE = float(os.environ.get("AUTOPAY_BENCH_LOAD_RATE", "100"))
SECONDS = float(os.environ.get("AUTOPAY_BENCH_LOAD_SECONDS", "60"))
WARMUP_S = float(os.environ.get("AUTOPAY_BENCH_LOAD_WARMUP_SECONDS", "5"))
MAILBOXES = int(os.environ.get("AUTOPAY_BENCH_LOAD_MAILBOXES", "100"))
CARDS = int(os.environ.get("AUTOPAY_BENCH_LOAD_CARDS", "400"))
MERCHANTS = int(os.environ.get("AUTOPAY_BENCH_LOAD_MERCHANTS", "10"))
IDLE_S = float(os.environ.get("AUTOPAY_BENCH_LOAD_IDLE_SECONDS", "5"))
"""The stack's CPU with every mailbox watched and no payment, measured before the load."""
STEPS = [
    float(r) for r in os.environ.get("AUTOPAY_BENCH_LOAD_STEPS", "20,40,60,80").split(",") if r
]
"""Rates tried first, each for `STEP_S`, up to the first that misses the target."""
STEP_S = float(os.environ.get("AUTOPAY_BENCH_LOAD_STEP_SECONDS", "15"))
TARGET_P99_MS = 50.0
WEBHOOK_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 120.0
SERIES_FILE = "e2e_load_series.json"
PLOT_FILE = "e2e_load.png"


def _log(message: str) -> None:
    print(f"[bench load] {message}", file=sys.stderr, flush=True)


@dataclass
class Shop:
    merchant_id: str
    api_key: str
    webhook_secret: str
    cards: list[tuple[str, str]] = field(default_factory=list)
    """(gmail, card_last4) of each of its cards."""


@dataclass
class Payment:
    n: int
    at: float
    """Scheduled start, seconds from the schedule's start."""
    shop: Shop
    gmail: str
    card_last4: str
    measured: bool
    lag_ms: float = 0.0
    create_ms: float | None = None
    webhook_ms: float | None = None
    """APPEND answered → webhook arrived."""
    total_ms: float | None = None
    """create-payment sent → webhook arrived."""
    ingest_ms: float | None = None
    """APPEND answered → its `credit.received` seen on NATS (mail-ingest's part of webhook_ms)."""
    error: str | None = None


class _Mailboxes:
    """One logged-in IMAP connection per mailbox, one APPEND at a time on each."""

    def __init__(self, imap: dict, password: str) -> None:
        self.imap, self.password = imap, password
        self.clients: dict[str, aioimaplib.IMAP4] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    async def open(self, gmail: str) -> None:
        login = self.imap | {"user": gmail, "password": self.password}
        self.clients[gmail] = await logged_in(login, command_timeout_s=30)
        self.locks[gmail] = asyncio.Lock()

    async def append(self, gmail: str, raw: bytes) -> None:
        async with self.locks[gmail]:
            response = await self.clients[gmail].append(raw, mailbox="INBOX")
        if response.result != "OK":
            raise RuntimeError(f"APPEND refused: {response.result}")

    async def close(self) -> None:
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                await client.logout()


class _Credits:
    """When each `credit.received` went by on NATS, by (gmail, card, amount in tiyin)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str, int], float] = {}
        self._nc: NatsClient | None = None

    async def watch(self, state_dir: Path) -> None:
        settings = load_settings(state_dir)
        self._nc = nc = await nats.connect(settings.nats_url)
        subject = CreditReceived.subject_pattern(Namespace(settings.namespace))
        await nc.subscribe(subject, cb=self._on_credit)

    async def _on_credit(self, msg) -> None:
        at = time.perf_counter()
        with contextlib.suppress(ValueError, KeyError, TypeError):
            credit = json.loads(msg.data)["credit"]
            self.seen[(credit["gmail"], credit["card_last4"], int(credit["amount_tiyin"]))] = at

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()


async def _provision(state_dir: Path, token: str) -> list[Shop]:
    gmails = [f"load{token}m{i:03d}@gmail.com" for i in range(MAILBOXES)]
    password = read_json(state_dir / RUN_FILE)["imap_password"]
    shops: list[Shop] = []
    async with Operator(load_settings(state_dir)) as op:
        for m in range(MERCHANTS):
            created = await op.create_merchant(f"Load shop {m}", "Asosiy", 1_000_000, 30, False)
            merchant_id = created.merchant.merchant_id
            # the generator's own pace must not meet the merchant's API rate limit
            await op.accounts.set_rate_limit(merchant_id, per_s=10_000, burst=10_000)
            shops.append(Shop(merchant_id, created.api_key, created.webhook_secret))
        for card in range(CARDS):
            mailbox = card % MAILBOXES
            shop = shops[mailbox % MERCHANTS]
            last4 = f"{1000 + card:04d}"
            await op.add_card(shop.merchant_id, last4, gmails[mailbox], password)
            shop.cards.append((gmails[mailbox], last4))
    return shops


async def _wait_connected(clients: dict[str, aiohttp.ClientSession]) -> float:
    """Seconds until `my-cards` says every card's mailbox is connected."""
    started = time.monotonic()
    waiting = set(clients)
    while waiting:
        for merchant_id in list(waiting):
            with contextlib.suppress(aiohttp.ClientError, ValueError, KeyError):
                async with clients[merchant_id].get("/api/my-cards") as response:
                    cards = (await response.json())["cards"]
                if cards and all(c.get("status") == "connected" for c in cards):
                    waiting.discard(merchant_id)
        if time.monotonic() - started > CONNECT_TIMEOUT_S:
            raise TimeoutError(f"merchants {sorted(waiting)}: mailboxes not connected")
        await asyncio.sleep(0.5)
    return time.monotonic() - started


def _schedule(
    shops: list[Shop], rng: random.Random, rate: float, warmup_s: float, seconds: float
) -> list[Payment]:
    cards = [(shop, gmail, card) for shop in shops for gmail, card in shop.cards]
    payments = []
    for n in range(round(rate * (warmup_s + seconds))):
        shop, gmail, card = rng.choice(cards)
        at = n / rate
        payments.append(Payment(n, at, shop, gmail, card, measured=at >= warmup_s))
    return payments


def _paid_error(arrival: Arrival, order_id: str, amount: int) -> str | None:
    if not arrival.verified:
        return "webhook signature did not verify"
    payload = arrival.payload
    if payload.get("status") != "paid" or payload.get("amount") != amount:
        said = f"{payload.get('status')} {payload.get('amount')}"
        return f"webhook of order {order_id} says {said}, not paid {amount}"
    return None


@dataclass
class _Harness:
    """What every payment of a run goes through: the merchants' API sessions, the mailboxes'
    IMAP connections, the webhook receiver and the `credit.received` watcher."""

    rng: random.Random
    clients: dict[str, aiohttp.ClientSession]
    mailboxes: _Mailboxes
    receiver: WebhookReceiver
    credits: _Credits


async def _pay(p: Payment, t0: float, base: int, h: _Harness) -> None:
    await asyncio.sleep(max(0.0, t0 + p.at - time.perf_counter()))
    sent = time.perf_counter()
    p.lag_ms = (sent - t0 - p.at) * 1000
    stage = "create-payment"
    try:
        body = {
            "amount_base": base,
            "card_last4": p.card_last4,
            "gmail": p.gmail,
            "webhook_url": h.receiver.url(p.shop.merchant_id),
        }
        async with h.clients[p.shop.merchant_id].post("/api/create-payment", json=body) as response:
            text = await response.text()
        created = time.perf_counter()
        p.create_ms = (created - sent) * 1000
        answer = json.loads(text) if text.startswith("{") else {}
        if response.status != 200 or not answer.get("success"):
            p.error = f"create {response.status} {text[:120]}"
            return
        order_id, amount = str(answer["order_id"]), int(answer["amount"])
        arrival = h.receiver.expect(order_id)
        raw = uzcard_credit_email(
            to=p.gmail,
            amount_tiyin=amount * 100,
            card_last4=p.card_last4,
            occurred_at=datetime.now(TASHKENT),
        )
        stage = "APPEND"
        await h.mailboxes.append(p.gmail, raw)
        mailed = time.perf_counter()
        stage = "webhook"
        got = await asyncio.wait_for(asyncio.shield(arrival), WEBHOOK_TIMEOUT_S)
    except TimeoutError:
        p.error = f"{stage}: no answer within {WEBHOOK_TIMEOUT_S:g} s"
        return
    except Exception as exc:  # a refused call, a dropped connection: counted, never hidden
        p.error = f"{stage}: {type(exc).__name__}: {exc}"[:160]
        return
    p.webhook_ms = (got.at - mailed) * 1000
    p.total_ms = (got.at - sent) * 1000
    if (credited := h.credits.seen.get((p.gmail, p.card_last4, amount * 100))) is not None:
        p.ingest_ms = (credited - mailed) * 1000
    p.error = _paid_error(got, order_id, amount)


async def _measure(stack: dict, state_dir: Path) -> tuple[list[Payment], WebhookReceiver, dict]:
    rng = random.Random(20261206)
    shops = await _provision(state_dir, secrets.token_hex(3))
    receiver = await WebhookReceiver({s.merchant_id: s.webhook_secret for s in shops}).start()
    # aiohttp, not httpx: the generator must cost the machine as little as it can
    clients = {
        s.merchant_id: aiohttp.ClientSession(
            base_url=stack["gateway_url"],
            headers={"x-api-key": s.api_key, "accept-language": "en"},
            timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S),
            connector=aiohttp.TCPConnector(limit=64),
        )
        for s in shops
    }
    mailboxes = _Mailboxes(stack["imap"], read_json(state_dir / RUN_FILE)["imap_password"])
    setup: dict[str, float] = {}
    credits = _Credits()
    h = _Harness(rng, clients, mailboxes, receiver, credits)
    try:
        await credits.watch(state_dir)
        setup["e2e_load_connect_s"] = round(await _wait_connected(clients), 1)
        for gmail in sorted({gmail for s in shops for gmail, _ in s.cards}):
            await mailboxes.open(gmail)
        setup |= await _steps(shops, h)
        payments = _schedule(shops, rng, RATE, WARMUP_S, SECONDS)
        _log(
            f"{len(payments)} payments at {RATE:g}/s ({WARMUP_S:g}s warm-up + {SECONDS:g}s),"
            f" {MERCHANTS} merchants, {len(mailboxes.clients)} mailboxes, {CARDS} cards"
        )
        supervisor = read_json(state_dir / RUN_FILE)["supervisor_pid"]
        idle = _cpu(supervisor)
        await asyncio.sleep(IDLE_S)
        before = _cpu(supervisor)
        profiles = _profile_window(supervisor) if profiling() else []
        setup["e2e_load_idle_cpu_cores"] = round(
            sum(before[k] - idle.get(k, 0.0) for k in before if k not in HARNESS) / IDLE_S, 3
        )
        _log(
            "idle CPU (cores): "
            + ", ".join(f"{k} {(before[k] - idle.get(k, 0.0)) / IDLE_S:.3f}" for k in before)
        )
        await _run_payments(payments, h)
        after = _cpu(supervisor)
        setup |= _cpu_figures(before, after, len(payments))
        for profile in profiles:
            profile.finish()
        await asyncio.sleep(1.0)  # a late second webhook still counts as a repeat
    finally:
        for client in clients.values():
            await client.close()
        await mailboxes.close()
        await receiver.close()
        await credits.close()
    return payments, receiver, setup


async def _run_payments(payments: list[Payment], h: _Harness) -> None:
    t0 = time.perf_counter() + 0.5
    await asyncio.gather(*(_pay(p, t0, _base(h.rng), h) for p in payments))


async def _steps(shops: list[Shop], h: _Harness) -> dict[str, float]:
    """Rising rates (`STEPS`), `STEP_S` each, until one misses `e2e_load_p99_ms` ≤ 50 ms with no
    error: `e2e_load_sustained_rate_per_s` is the highest that held (0 when none did), what a
    machine too small for the full rate does hold."""
    found: dict[str, float] = {}
    sustained = 0.0
    for rate in STEPS:
        payments = _schedule(shops, h.rng, rate, 1.0, STEP_S)
        await _run_payments(payments, h)
        step = figures(payments, 0, rate)
        p99 = step.get("e2e_load_p99_ms", float("inf"))
        found[f"e2e_load_p99_ms_at_{rate:g}_per_s"] = p99
        _log(f"step {rate:g}/s: p99 {p99} ms, {step['e2e_load_errors']} errors")
        if p99 > TARGET_P99_MS or step["e2e_load_errors"]:
            break
        sustained = rate
    return found | {"e2e_load_sustained_rate_per_s": sustained} if STEPS else found


def _profile_window(supervisor: int) -> list[Profile]:
    """py-spy on every Python process of the stack and on this one, for the load's duration
    only (`profile_load-<kind>.txt`): the services' start-up is not in it."""
    processes = [psutil.Process(), *psutil.Process(supervisor).children(recursive=True)]
    profiles = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            kind = "load-generator" if process.pid == os.getpid() else None
            kind = kind or process_kind(process.cmdline())
            if kind not in {"nats", "redis", "supervisor", "telegram"}:
                profiles.append(Profile(process.pid, f"load-{kind}", WARMUP_S + SECONDS + 1))
    return profiles


def _cpu(supervisor: int) -> dict[str, float]:
    used = cpu_seconds(supervisor)
    times = psutil.Process().cpu_times()
    used["load-generator"] = times.user + times.system
    return used


HARNESS = {"load-generator", "imap-server", "telegram", "supervisor"}
"""Processes of the benchmark, not of AutoPay (a real Gmail serves the mail)."""


def _cpu_figures(before: dict[str, float], after: dict[str, float], payments: int) -> dict:
    """CPU milliseconds per payment, AutoPay's (services, NATS, Redis) and the harness's, and
    per process kind in the log."""
    per = {kind: (after[kind] - before.get(kind, 0.0)) * 1000 / max(payments, 1) for kind in after}
    _log(
        "CPU ms per payment: "
        + ", ".join(f"{kind} {ms:.2f}" for kind, ms in sorted(per.items(), key=lambda kv: -kv[1]))
    )
    return {
        "e2e_load_cpu_ms_per_payment": round(sum(v for k, v in per.items() if k not in HARNESS), 2),
        "e2e_load_cpu_ms_per_payment_harness": round(sum(per[k] for k in per if k in HARNESS), 2),
    } | {f"e2e_load_cpu_ms_per_payment_{k.replace('-', '_')}": round(v, 2) for k, v in per.items()}


def _base(rng: random.Random) -> int:
    return rng.randrange(10_000, 2_000_000, 1_000)


def figures(payments: list[Payment], repeats: int, rate: float | None = None) -> dict[str, float]:
    measured = [p for p in payments if p.measured and p.error is None]
    webhook = [p.webhook_ms for p in measured if p.webhook_ms is not None]
    create = [p.create_ms for p in measured if p.create_ms is not None]
    total = [p.total_ms for p in measured if p.total_ms is not None]
    ingest = [p.ingest_ms for p in measured if p.ingest_ms is not None]
    lag = [p.lag_ms for p in payments if p.measured]
    found: dict[str, float] = {
        "e2e_load_errors": sum(1 for p in payments if p.error is not None),
        "e2e_load_payments": len(payments),
        "e2e_load_rate_per_s": RATE if rate is None else rate,
        "e2e_load_webhook_repeats": repeats,
    }
    if webhook:
        found |= {
            "e2e_load_p50_ms": round(percentile(webhook, 0.50), 1),
            "e2e_load_p99_ms": round(percentile(webhook, 0.99), 1),
            "e2e_load_max_ms": round(max(webhook), 1),
            "e2e_load_create_p99_ms": round(percentile(create, 0.99), 1),
            "e2e_load_payment_p99_ms": round(percentile(total, 0.99), 1),
            "e2e_load_mail_to_credit_p50_ms": round(percentile(ingest, 0.50), 1) if ingest else -1,
            "e2e_load_mail_to_credit_p99_ms": round(percentile(ingest, 0.99), 1) if ingest else -1,
            "e2e_load_schedule_lag_p99_ms": round(percentile(lag, 0.99), 1),
        }
    return found


def write_series(payments: list[Payment], path: Path) -> None:
    rows = [
        {
            "at": round(p.at, 3),
            "measured": p.measured,
            "create_ms": p.create_ms,
            "webhook_ms": p.webhook_ms,
            "total_ms": p.total_ms,
            "ingest_ms": p.ingest_ms,
            "error": p.error,
        }
        for p in payments
    ]
    path.write_text(json.dumps({"rate_per_s": RATE, "payments": rows}))


def plot(series: Path, out: Path) -> None:
    """Percentiles per second of the run: mail → webhook above, create-payment below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(series.read_text())
    rows = data["payments"]
    seconds = sorted({int(r["at"]) for r in rows})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for axis, key, title in (
        (top, "webhook_ms", "mail APPENDed → webhook received"),
        (bottom, "create_ms", "create-payment answered"),
    ):
        for q, style in ((0.5, "-"), (0.9, "--"), (0.99, "-."), (1.0, ":")):
            points = []
            for s in seconds:
                values = [r[key] for r in rows if int(r["at"]) == s and r[key] is not None]
                if values:
                    points.append((s, percentile(values, q)))
            label = "max" if q == 1.0 else f"p{round(q * 100)}"
            axis.plot([x for x, _ in points], [y for _, y in points], style, label=label)
        if key == "webhook_ms":  # mail-ingest's part of it
            points = []
            for s in seconds:
                values = [r["ingest_ms"] for r in rows if int(r["at"]) == s and r.get("ingest_ms")]
                if values:
                    points.append((s, percentile(values, 0.99)))
            xs, ys = [x for x, _ in points], [y for _, y in points]
            axis.plot(xs, ys, color="grey", linewidth=0.8, label="p99 to credit.received")
        axis.set_ylabel("ms")
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(loc="upper right", fontsize=8)
    errors = [int(r["at"]) for r in rows if r["error"]]
    for s in errors:
        top.axvline(s, color="red", alpha=0.3)
    warm = [r["at"] for r in rows if not r["measured"]]
    if warm:
        for axis in (top, bottom):
            axis.axvspan(0, max(warm), color="grey", alpha=0.15)
    bottom.set_xlabel(f"second of the run ({data['rate_per_s']:g} payments/s; grey: warm-up)")
    fig.suptitle(f"AutoPay under steady load: {len(rows)} payments, {len(errors)} errors")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def run() -> dict:
    with dev_stack("load") as (stack, state_dir):
        payments, receiver, setup = asyncio.run(_measure(stack, state_dir))
    found = setup | figures(payments, receiver.repeats)
    series = output_dir() / SERIES_FILE
    write_series(payments, series)
    plot(series, output_dir() / PLOT_FILE)
    for error in sorted({p.error for p in payments if p.error})[:10]:
        _log(f"error: {error}")
    _log(
        f"{found['e2e_load_payments']} payments, {found['e2e_load_errors']} errors;"
        f" mail → webhook p50 {found.get('e2e_load_p50_ms')} ms,"
        f" p99 {found.get('e2e_load_p99_ms')} ms"
    )
    return found


if __name__ == "__main__":
    if sys.argv[1:2] == ["plot"] and len(sys.argv) == 4:
        plot(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        print(json.dumps(run()))
