"""The chaos run against a running dev stack (`autopay dev up --detach --state-dir DIR`).

1. Setup: merchants (one per mailbox), their cards, a local webhook receiver (one path per
   merchant, every request's Standard Webhooks signature verified with that merchant's secret).
   The merchants' API rate limit is lifted: the driver's own polling must not be what it sees.
2. Load: orders are created over the first part of the run, each with its own
   `Idempotency-Key` and a fixed amount unique on its card over the whole run; every failed call
   (a killed gateway, a restarted Redis) is retried with the same key. A few seconds after its
   order exists, its bank mail is APPENDed to the mailbox over IMAP.
3. Meanwhile a thread SIGKILLs a random ready service (gateway, mail-ingest, matcher, notifier)
   every few seconds, and Redis once (or `--redis-kills` times); the stack's supervisor restarts
   them, Redis from its append-only file.
4. Settle: once the chaos stops, wait (bounded) until every paid mail shows a paid order with a
   webhook; then read every order (`check-payment`) and the ledgers, and compute the figures
   (`checks.evaluate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from autopay_bankmail.synth import credit_notification
from autopay_cli.config import RUN_FILE, STACK_FILE, load_settings, read_json
from autopay_cli.operations import Operator
from autopay_contracts.local_time import TASHKENT
from autopay_devtools.chaos.checks import (
    Delivery,
    Intent,
    LedgerRecord,
    evaluate,
    ledger_gaps,
    recover_order_ids,
)
from autopay_devtools.mailbox import append
from autopay_runtime.connections import open_redis

SERVICES = ("gateway", "mail-ingest", "matcher", "notifier")
RETRYABLE_409 = "in progress"  # idempotency_in_progress (English): the first call still runs
RESERVED_409 = "already reserved"  # amount_reserved (English)


_STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[chaos +{time.monotonic() - _STARTED:5.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Options:
    state_dir: Path
    orders: int = 300
    mailboxes: int = 4
    cards_per_mailbox: int = 2
    duration: float = 80.0
    """The load and the chaos, seconds."""
    kill_interval: float = 4.0
    """Mean seconds between two kills (each one uniform in [0.5, 1.5] of it)."""
    redis_kills: int = 1
    nats_kills: int = 0
    """SIGKILLs of one NATS node of a cluster stack (the supervisor brings it back)."""
    settle_timeout: float = 75.0
    """The wait at the end: past the notifier's 60 s delivery lease (a notifier killed with a
    claimed delivery retries it when the lease ends) and the matcher's 30 s AckWait."""
    ledger_timeout: float = 45.0
    """How long the ledgers may lag behind the paid orders at the end: the ledger's consumer
    of a killed matcher gets its unacknowledged events again after their 30 s AckWait."""
    linger: float = 3.0
    """Seconds the receiver keeps listening once settled, for late second webhooks (more than
    60 s shows the redeliveries of the notifier's leases, with their webhook-id)."""
    create_timeout: float = 100.0
    """How long one create keeps being retried: past the 60 s a crashed call's claim of its
    `Idempotency-Key` lasts."""
    mail_delay: float = 8.0
    """A mail is appended 0.5..mail_delay seconds after its order exists."""
    webhook_delay: float = 0.3
    """The receiver answers each webhook this long after it arrived, so that a notifier kill
    often lands between the request and its answer (the retry must keep the webhook-id)."""
    concurrency: int = 16
    seed: int | None = None


@dataclass
class Merchant:
    index: int
    merchant_id: str
    api_key: str
    webhook_secret: str
    gmail: str
    cards: list[str]


# --- the webhook receiver ---------------------------------------------------------------------


class Receiver:
    """`POST /hook/<merchant index>`: records every request, verified with that merchant's
    secret; answers 200 after `delay` seconds."""

    def __init__(self, secrets_by_merchant: dict[int, str], delay: float = 0.0) -> None:
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._webhooks = {m: Webhook(s) for m, s in secrets_by_merchant.items()}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                time.sleep(delay)  # an endpoint that takes a moment: kills land mid-delivery
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                # the notifier may have been killed (or given up) while this answer was due
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, merchant: int) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{merchant}"

    def record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        merchant = int(path.rsplit("/", 1)[-1]) if path.rsplit("/", 1)[-1].isdigit() else -1
        verified = False
        webhook = self._webhooks.get(merchant)
        if webhook is not None:
            try:
                webhook.verify(body, headers)
                verified = True
            except (WebhookVerificationError, ValueError):
                verified = False
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        amount = payload.get("amount")
        delivery = Delivery(
            merchant=merchant,
            webhook_id=headers.get("webhook-id"),
            verified=verified,
            order_id=str(payload["order_id"]) if payload.get("order_id") is not None else None,
            status=payload.get("status"),
            paid_at=payload.get("paid_at"),
            gmail=str(payload.get("gmail") or ""),
            card_last4=str(payload.get("card_last4") or ""),
            amount=amount if isinstance(amount, int) else 0,
            received_at=time.monotonic(),
        )
        with self._lock:
            self.deliveries.append(delivery)

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the chaos thread -------------------------------------------------------------------------


class Chaos(threading.Thread):
    """SIGKILLs a random ready service every `interval` (±50 %) seconds until `stop()`, Redis
    (one random master of a Cluster) at each time of `redis_at` and one random NATS node of a
    cluster at each time of `nats_at` (seconds from the start), waiting for each restart."""

    def __init__(
        self,
        state_dir: Path,
        interval: float,
        redis_at: list[float],
        rng: random.Random,
        nats_at: list[float] | None = None,
    ) -> None:
        super().__init__(name="chaos", daemon=True)
        self.state_dir = state_dir
        self.interval = interval
        self.redis_at = sorted(redis_at)
        self.nats_at = sorted(nats_at or [])
        self.nats_restarts = 0
        self.rng = rng
        self.kills: Counter[str] = Counter()
        self.redis_restarts = 0
        self.failures: list[str] = []
        self._halt = threading.Event()
        self._http = httpx.Client(timeout=1.0)

    def run_file(self) -> dict:
        return read_json(self.state_dir / RUN_FILE)

    def stop(self) -> None:
        self._halt.set()
        self.join(60)

    def close(self) -> None:
        self._http.close()

    def run(self) -> None:
        started = time.monotonic()
        next_kill = started + self._gap()
        try:
            while not self._halt.is_set():
                now = time.monotonic()
                if self.redis_at and now - started >= self.redis_at[0]:
                    self.redis_at.pop(0)
                    self._kill_redis()
                    next_kill = time.monotonic() + self._gap()
                elif self.nats_at and now - started >= self.nats_at[0]:
                    self.nats_at.pop(0)
                    self._kill_nats_node()
                    next_kill = time.monotonic() + self._gap()
                elif now >= next_kill:
                    self._kill_service()
                    next_kill = now + self._gap()
                self._halt.wait(0.05)
        except Exception as exc:  # the run must still end and report
            self.failures.append(f"chaos thread: {exc!r}")
            log(f"chaos thread failed: {exc!r}")

    def _gap(self) -> float:
        return self.interval * self.rng.uniform(0.5, 1.5)

    def ready(self, run: dict, name: str) -> bool:
        pid = (run.get("pids") or {}).get(name)
        if not pid or not psutil.pid_exists(pid):
            return False
        with contextlib.suppress(httpx.HTTPError):
            url = f"http://127.0.0.1:{run[f'{name}_port']}/readyz"
            return self._http.get(url).status_code == 200
        return False

    def _kill_service(self) -> None:
        run = self.run_file()
        candidates = [name for name in SERVICES if self.ready(run, name)]
        if not candidates:
            return
        name = self.rng.choice(candidates)
        pid = run["pids"][name]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            self.kills[name] += 1
            log(f"SIGKILL {name} (pid {pid})")

    def _kill_redis(self) -> None:
        run = self.run_file()
        pids = redis_pids(run)
        pid = self.rng.choice(pids)
        os.kill(pid, signal.SIGKILL)
        self.kills["redis"] += 1
        log(f"SIGKILL redis (pid {pid}{', one master of the Cluster' if len(pids) > 1 else ''})")
        if self._restarted("redis", pid, lambda run: redis_pids(run)):
            self.redis_restarts += 1

    def _kill_nats_node(self) -> None:
        pids = list(self.run_file().get("nats_pids") or [])
        if len(pids) < 2:
            self.failures.append("a NATS node kill was asked of a stack without a NATS cluster")
            return
        pid = self.rng.choice(pids)
        os.kill(pid, signal.SIGKILL)
        self.kills["nats"] += 1
        log(f"SIGKILL nats node (pid {pid})")
        if self._restarted("nats", pid, lambda run: list(run.get("nats_pids") or [])):
            self.nats_restarts += 1

    def _restarted(self, what: str, pid: int, pids_of: Callable[[dict], list[int]]) -> bool:
        """Wait (30 s at most) until the supervisor lists a live process in place of `pid`."""
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < 30:
            with contextlib.suppress(Exception):
                now = pids_of(self.run_file())
                if pid not in now and all(psutil.pid_exists(p) for p in now):
                    log(f"{what} restarted in {time.monotonic() - killed_at:.1f}s")
                    return True
            time.sleep(0.05)
        self.failures.append(f"{what} was not restarted within 30 s")
        log(f"{what} was not restarted within 30 s")
        return False


def redis_pids(run: dict) -> list[int]:
    """The Redis server's pid, or the Cluster masters' (as the supervisor lists them)."""
    if pids := run.get("redis_pids"):
        return list(pids)
    for pid in run.get("infra_pids", []):
        with contextlib.suppress(psutil.Error):
            if "redis" in psutil.Process(pid).name():
                return [pid]
    raise LookupError(f"no redis-server among {run.get('infra_pids')}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def redis_aof_on(redis_url: str) -> bool:
    """Redis writes its append-only file (what it restarts from), as `INFO persistence` says
    (its command line is retitled, so it cannot be read there)."""
    client = open_redis(redis_url, decode_responses=False)
    try:
        info = await client.info("persistence")
        # a Cluster client answers per node: every node must write its file
        nodes = (
            info.values() if info and all(isinstance(v, dict) for v in info.values()) else [info]
        )
        return all(int(node.get("aof_enabled", 0)) == 1 for node in nodes)
    finally:
        await client.aclose()


# --- the driver -------------------------------------------------------------------------------


@dataclass
class Run:
    options: Options
    stack: dict
    rng: random.Random
    merchants: list[Merchant] = field(default_factory=list)
    intents: list[Intent] = field(default_factory=list)
    clients: dict[int, httpx.AsyncClient] = field(default_factory=dict)
    receiver: Receiver | None = None
    retries: Counter[str] = field(default_factory=Counter)
    imap_password: str = ""

    # --- setup ---
    async def setup(self) -> None:
        opts = self.options
        run = read_json(opts.state_dir / RUN_FILE)
        self.imap_password = run["imap_password"]
        token = secrets.token_hex(3)
        async with Operator(load_settings(opts.state_dir)) as op:
            for n in range(opts.mailboxes):
                created = await op.create_merchant(
                    f"Chaos shop {n}", "Asosiy", 100_000, 30, test=False
                )
                merchant_id = created.merchant.merchant_id
                await op.accounts.set_rate_limit(merchant_id, per_s=10_000, burst=10_000)
                gmail = f"chaos{token}m{n}@gmail.com"
                own = [f"{7000 + 10 * n + c:04d}" for c in range(opts.cards_per_mailbox)]
                for card in own:
                    await op.add_card(merchant_id, card, gmail, self.imap_password)
                self.merchants.append(
                    Merchant(n, merchant_id, created.api_key, created.webhook_secret, gmail, own)
                )
        self.receiver = Receiver(
            {m.index: m.webhook_secret for m in self.merchants}, opts.webhook_delay
        )
        for m in self.merchants:
            self.clients[m.index] = httpx.AsyncClient(
                base_url=self.stack["gateway_url"],
                headers={"x-api-key": m.api_key, "accept-language": "en"},
                timeout=10,
                limits=httpx.Limits(max_connections=opts.concurrency),
            )
        cards = [(m, card) for m in self.merchants for card in m.cards]
        amounts = {
            card: iter(self.rng.sample(range(20_000, 100_000), opts.orders)) for _, card in cards
        }
        for index in range(opts.orders):
            m, card = self.rng.choice(cards)
            self.intents.append(Intent(index, m.index, m.gmail, card, next(amounts[card])))
        await self._wait_connected()

    async def _wait_connected(self) -> None:
        """mail-ingest watches every new mailbox (`my-cards` says `connected`), within 60 s."""
        deadline = time.monotonic() + 60
        waiting = {m.index for m in self.merchants}
        while waiting and time.monotonic() < deadline:
            for index in list(waiting):
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    cards = (await self.clients[index].get("/api/my-cards")).json()["cards"]
                    if cards and all(c.get("status") == "connected" for c in cards):
                        waiting.discard(index)
            await asyncio.sleep(0.5)
        if waiting:
            raise TimeoutError(f"mailboxes of merchants {sorted(waiting)} not connected")

    # --- calls, retried through kills ---
    async def call(
        self, merchant: int, path: str, body: dict | None, *, deadline: float, **kwargs
    ) -> httpx.Response:
        """POST (or GET without a body) until an answer that is not a failure of the system:
        not a transport error, 5xx, 429, or 409 "still in progress". `TimeoutError` past
        `deadline` (monotonic)."""
        response, _ = await self.call_counted(merchant, path, body, deadline=deadline, **kwargs)
        return response

    async def call_counted(
        self, merchant: int, path: str, body: dict | None, *, deadline: float, **kwargs
    ) -> tuple[httpx.Response, int]:
        """`call`, and how many attempts it took."""
        client = self.clients[merchant]
        delay = 0.2
        attempts = 0
        while True:
            attempts += 1
            try:
                if body is None:
                    response = await client.get(path, **kwargs)
                else:
                    response = await client.post(path, json=body, **kwargs)
                if not (
                    response.status_code >= 500
                    or response.status_code == 429
                    or (response.status_code == 409 and RETRYABLE_409 in response.text)
                ):
                    return response, attempts
                self.retries[f"{path.split('?')[0]} {response.status_code}"] += 1
            except httpx.HTTPError as exc:
                self.retries[f"{path.split('?')[0]} {type(exc).__name__}"] += 1
            if time.monotonic() + delay > deadline:
                raise TimeoutError(path)
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    async def create(self, intent: Intent) -> None:
        assert self.receiver is not None
        body = {
            "amount": intent.amount,
            "card_last4": intent.card_last4,
            "gmail": intent.gmail,
            "client_user_id": str(intent.index),
            "webhook_url": self.receiver.url(intent.merchant),
        }
        key = f"chaos-{intent.index}-{secrets.token_hex(4)}"
        deadline = time.monotonic() + self.options.create_timeout
        try:
            response, attempts = await self.call_counted(
                intent.merchant,
                "/api/create-payment",
                body,
                deadline=deadline,
                headers={"idempotency-key": key},
            )
        except TimeoutError:
            intent.create_error = "no answer before the create timeout"
            return
        if response.status_code == 200 and response.json().get("success"):
            intent.order_id = str(response.json()["order_id"])
            return
        intent.create_error = f"{response.status_code} {response.text[:200]}"
        # The amount is fresh: only this key's earlier attempt can hold it, so the retry ran
        # the creation again instead of replaying it.
        if response.status_code == 409 and RESERVED_409 in response.text and attempts > 1:
            intent.idempotency_failure = True
            log(
                f"idempotency failure: order {intent.index} ({intent.card_last4}, "
                f"{intent.amount}) key {key}: attempt {attempts} answered {intent.create_error}"
            )
        else:
            log(f"create {intent.index} failed: {intent.create_error}")

    async def pay(self, intent: Intent) -> None:
        """APPEND the bank's mail (retrying the same bytes, so one Message-ID)."""
        merchant = self.merchants[intent.merchant]
        imap = dict(self.stack["imap"]) | {"user": merchant.gmail, "password": self.imap_password}
        raw = credit_notification(
            "uzcard-email",
            to=merchant.gmail,
            amount_tiyin=intent.amount * 100,
            card_last4=intent.card_last4,
            occurred_at=datetime.now(TASHKENT),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                await append(imap, raw)
                intent.mailed_at = time.monotonic()
                intent.mail_delivered = True
                intent.mail_error = None
                return
            except Exception as exc:
                intent.mail_error = repr(exc)
                if time.monotonic() > deadline:
                    log(f"mail of order {intent.index} not appended: {intent.mail_error}")
                    return
                await asyncio.sleep(0.5)

    async def order_life(
        self,
        intent: Intent,
        at: float,
        create_gate: asyncio.Semaphore,
        mail_gate: asyncio.Semaphore,
    ) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        async with create_gate:
            await self.create(intent)
        if intent.order_id is None and not intent.idempotency_failure:
            return
        # An idempotency failure's order exists: pay it too, and find it by its mail.
        await asyncio.sleep(self.rng.uniform(0.5, self.options.mail_delay))
        async with mail_gate:
            await self.pay(intent)

    async def load(self) -> None:
        opts = self.options
        started = time.monotonic()
        window = max(1.0, opts.duration - opts.mail_delay - 2)
        create_gate = asyncio.Semaphore(opts.concurrency)
        mail_gate = asyncio.Semaphore(4)
        tasks = [
            asyncio.create_task(
                self.order_life(intent, started + window * n / opts.orders, create_gate, mail_gate)
            )
            for n, intent in enumerate(self.intents)
        ]
        progress = asyncio.create_task(self._progress(started))
        try:
            await asyncio.gather(*tasks)
        finally:
            progress.cancel()

    async def _progress(self, started: float) -> None:
        while True:
            await asyncio.sleep(15)
            created = sum(1 for i in self.intents if i.order_id)
            mails = sum(1 for i in self.intents if i.mail_delivered)
            hooks = len(self.receiver.snapshot()) if self.receiver else 0
            log(
                f"t={time.monotonic() - started:.0f}s created {created}, mails {mails}, "
                f"webhooks {hooks}, retried calls {sum(self.retries.values())}"
            )

    # --- settle and read back ---
    async def check(self, intent: Intent, deadline: float) -> None:
        if intent.order_id is None:
            return
        with contextlib.suppress(TimeoutError):
            response = await self.call(
                intent.merchant,
                "/api/check-payment",
                {"order_id": intent.order_id},
                deadline=deadline,
            )
            if response.status_code == 200:
                intent.status = response.json().get("status")

    async def check_all(self, intents: list[Intent], deadline: float) -> None:
        gate = asyncio.Semaphore(self.options.concurrency)

        async def one(intent: Intent) -> None:
            async with gate:
                await self.check(intent, deadline)

        await asyncio.gather(*(one(i) for i in intents))

    def _settled(self, intent: Intent, hooked: set[str | None]) -> bool:
        return intent.status == "paid" and intent.order_id in hooked

    async def settle(self) -> float:
        """Until every delivered mail shows a paid order with a verified webhook (bounded)."""
        assert self.receiver is not None
        started = time.monotonic()
        deadline = started + self.options.settle_timeout
        next_log = started
        while True:
            deliveries = self.receiver.snapshot()
            recover_order_ids(self.intents, deliveries, [])
            hooked = {d.order_id for d in deliveries if d.verified and d.status == "paid"}
            waiting = [i for i in self.intents if i.mail_delivered and not self._settled(i, hooked)]
            unchecked = [i for i in waiting if i.status != "paid"]
            if not waiting or time.monotonic() > deadline:
                return time.monotonic() - started
            if time.monotonic() >= next_log and time.monotonic() > started + 2:
                next_log = time.monotonic() + 5
                log(
                    f"settling: {len(unchecked)} mails without a paid order, "
                    f"{len(waiting) - len(unchecked)} paid orders without a webhook"
                )
            await self.check_all(unchecked, min(deadline, time.monotonic() + 10))
            await asyncio.sleep(1.0)

    async def ledger(self) -> list[LedgerRecord]:
        records: list[LedgerRecord] = []
        deadline = time.monotonic() + 60
        for m in self.merchants:
            cursor: str | None = None
            while True:
                params = {"limit": "200"} | ({"cursor": cursor} if cursor else {})
                response = await self.call(
                    m.index, "/api/transactions", None, deadline=deadline, params=params
                )
                response.raise_for_status()
                page = response.json()
                for tx in page["transactions"]:
                    records.append(
                        LedgerRecord(
                            id=tx["id"],
                            status=tx["status"],
                            order_id=tx.get("order_id"),
                            gmail=tx["gmail"],
                            card_last4=tx["card_last4"],
                            amount=tx["amount"],
                        )
                    )
                cursor = page.get("next_cursor")
                if not cursor:
                    break
        return records

    async def settled_ledger(self) -> list[LedgerRecord]:
        """The ledgers once every paid order's credit shows in them as matched, or as they are
        when `ledger_timeout` has passed (the gaps left then are a failure)."""
        deadline = time.monotonic() + self.options.ledger_timeout
        while True:
            records = await self.ledger()
            gaps = ledger_gaps(self.intents, records)
            if not gaps or time.monotonic() > deadline:
                for intent in gaps[:20]:
                    seen = [(r.id, r.status, r.order_id) for r in records if r.mail == intent.mail]
                    log(
                        f"LEDGER GAP order {intent.order_id} ({intent.gmail} "
                        f"{intent.card_last4}, {intent.amount}): ledger {seen}"
                    )
                return records
            log(f"waiting for the ledgers: {len(gaps)} paid orders not in them yet")
            await asyncio.sleep(2.0)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        if self.receiver is not None:
            self.receiver.close()


def wait_services_ready(chaos: Chaos, timeout: float = 60.0) -> list[str]:
    """Every service answers `/readyz` again; the ones that do not within `timeout`."""
    deadline = time.monotonic() + timeout
    pending = list(SERVICES)
    while pending and time.monotonic() < deadline:
        run = chaos.run_file()
        pending = [name for name in pending if not chaos.ready(run, name)]
        time.sleep(0.2)
    return pending


def service_restarts(run: dict) -> int:
    return sum((run.get("restarts") or {}).get(name, 0) for name in SERVICES)


async def drive(opts: Options) -> dict:
    started = time.monotonic()
    rng = random.Random(opts.seed)
    stack = read_json(opts.state_dir / STACK_FILE)
    run = Run(opts, stack, rng)
    chaos: Chaos | None = None
    try:
        await run.setup()
        if not await redis_aof_on(stack["redis_url"]):
            raise RuntimeError("the stack's Redis runs without its append-only file")
        restarts_before = service_restarts(read_json(opts.state_dir / RUN_FILE))
        log(
            f"{len(run.merchants)} merchants, {sum(len(m.cards) for m in run.merchants)} cards; "
            f"{opts.orders} orders over {opts.duration:.0f}s, a kill every ~{opts.kill_interval}s"
        )
        redis_at = sorted(rng.uniform(0.3, 0.7) * opts.duration for _ in range(opts.redis_kills))
        nats_at = sorted(rng.uniform(0.3, 0.7) * opts.duration for _ in range(opts.nats_kills))
        chaos = Chaos(opts.state_dir, opts.kill_interval, redis_at, rng, nats_at)
        chaos.start()
        load = asyncio.create_task(run.load())
        await asyncio.sleep(opts.duration)
        await asyncio.to_thread(chaos.stop)
        log(f"chaos over: {dict(chaos.kills)}; waiting for the last orders and mails")
        await load
        not_ready = await asyncio.to_thread(wait_services_ready, chaos)
        if not_ready:
            log(f"not ready after the chaos: {not_ready}")
        aof_after = await redis_aof_on(stack["redis_url"])
        settle_s = await run.settle()
        if opts.linger > 0:  # a late second webhook (another id) would arrive now
            log(f"settle wait over after {settle_s:.1f}s; listening {opts.linger:.0f}s more")
            await asyncio.sleep(opts.linger)
        assert run.receiver is not None
        await run.check_all(run.intents, time.monotonic() + 60)
        ledger = await run.settled_ledger()
        if recover_order_ids(run.intents, run.receiver.snapshot(), ledger):
            await run.check_all(run.intents, time.monotonic() + 60)
        deliveries = run.receiver.snapshot()
        figures = evaluate(run.intents, deliveries, ledger)
        # the supervisor's count, read once everything is back up
        restarted = service_restarts(read_json(opts.state_dir / RUN_FILE)) - restarts_before
        service_kills = sum(n for name, n in chaos.kills.items() if name not in ("redis", "nats"))
        result: dict[str, object] = {
            "orders": figures["orders"],
            "paid": figures["paid"],
            "kills": sum(chaos.kills.values()),
            "restarts": restarted + chaos.redis_restarts + chaos.nats_restarts,
            "redis_restarts": chaos.redis_restarts,
            "nats_restarts": chaos.nats_restarts,
            "lost": figures["lost"],
            "double_paid": figures["double_paid"],
            "missing_webhooks": figures["missing_webhooks"],
            "duplicate_webhook_ids": figures["duplicate_webhook_ids"],
            "seconds": round(time.monotonic() - started, 1),
        }
        result |= {k: v for k, v in figures.items() if k not in result}
        result["kills_by_process"] = dict(sorted(chaos.kills.items()))
        result["crashes"] = max(0, restarted - service_kills)
        result["settle_seconds"] = round(settle_s, 1)
        result["retried_calls"] = sum(run.retries.values())
        result["not_ready"] = not_ready
        result["chaos_failures"] = chaos.failures + (
            [] if aof_after else ["Redis runs without its append-only file after its restart"]
        )
        report_problems(run.intents, deliveries, ledger)
        return result
    finally:
        if chaos is not None:
            await asyncio.to_thread(chaos.stop)
            chaos.close()
        await run.close()


def report_problems(
    intents: list[Intent], deliveries: list[Delivery], ledger: list[LedgerRecord]
) -> None:
    """On stderr: each lost or unpaid order with what the webhooks and the ledger say of it."""
    from autopay_devtools.chaos.checks import lost_intents

    first_hook: dict[str, float] = {}
    for d in deliveries:
        if d.order_id and d.verified and d.status == "paid":
            first_hook[d.order_id] = min(first_hook.get(d.order_id, d.received_at), d.received_at)
    slow = sorted(
        (
            (first_hook[i.order_id] - i.mailed_at, i)
            for i in intents
            if i.order_id in first_hook and i.mailed_at is not None
        ),
        key=lambda pair: pair[0],
    )[-3:]
    for seconds, intent in reversed(slow):
        assert intent.mailed_at is not None  # as `slow` holds only mailed intents
        log(
            f"slow: order {intent.order_id} ({intent.gmail} {intent.card_last4}, "
            f"{intent.amount}) mailed at +{intent.mailed_at - _STARTED:.1f}s, "
            f"webhook {seconds:.1f}s later"
        )
    for intent in lost_intents(intents)[:20]:
        hooks = [d for d in deliveries if d.order_id and d.order_id == intent.order_id]
        records = [r for r in ledger if r.mail == intent.mail]
        log(
            f"LOST order {intent.order_id} (#{intent.index}, {intent.gmail} {intent.card_last4}, "
            f"{intent.amount}): status {intent.status}, create_error {intent.create_error}, "
            f"webhooks {len(hooks)}, ledger {[(r.id, r.status, r.order_id) for r in records]}"
        )
