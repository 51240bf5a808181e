"""Live acceptance of "no credit is ever lost": Redis is made unavailable for longer than any
redelivery window while credits wait to be decided, and every order still ends paid with its
webhook delivered.

Both scenarios pay with the matcher stopped (SIGSTOP) first, so the credits are waiting in the
CREDITS stream when Redis goes away; the matcher is resumed while Redis is still unavailable,
so it retries through the whole outage:

- frozen: Redis is SIGSTOPped (connections hang) for the outage;
- killed: Redis is SIGKILLed and restarted on the same port and directory from its append-only
  file after the outage (the supervisor, which would restart it at once, is held meanwhile).

`AUTOPAY_OUTAGE_SECONDS` sets the outage (default 45 s; the acceptance run uses 200). The stack's
matcher runs with a short decision timeout and backoff so that even the default outage takes
it past the old limit of 20 deliveries; `AUTOPAY_OUTAGE_STACK_DEFAULTS=1` runs it with its
production settings instead (then the outage must exceed the old limit's time window). Each
scenario prints its figures as one JSON line (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from contextlib import contextmanager

import httpx
import psutil
import pytest

from autopay_testing.waiting import eventually

pytestmark = pytest.mark.e2e

OUTAGE_S = float(os.environ.get("AUTOPAY_OUTAGE_SECONDS", "45"))
PAYMENTS = int(os.environ.get("AUTOPAY_OUTAGE_PAYMENTS", "5"))
STACK_DEFAULTS = os.environ.get("AUTOPAY_OUTAGE_STACK_DEFAULTS") == "1"
OLD_MAX_DELIVER = 20
OLD_WINDOW_S = {
    # the old matcher: 20 deliveries, a 1 s nak delay, each attempt as long as Redis takes to fail
    "frozen": OLD_MAX_DELIVER * (5 + 1),  # 5 s socket timeout on a hung Redis
    "killed": OLD_MAX_DELIVER * 1,  # refused at once
}
QUICK_RETRIES = {
    "AUTOPAY_DECISION_TIMEOUT_SECONDS": "1",
    "AUTOPAY_RETRY_DELAY_SECONDS": "0.25",
    "AUTOPAY_RETRY_MAX_DELAY_SECONDS": "0.5",
}


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    return {} if STACK_DEFAULTS else dict(QUICK_RETRIES)


# --- looking at the stack ------------------------------------------------------------------------


def redis_pid(stack) -> int:
    run = stack.run_file()
    port = run["redis_port"]
    for pid in run["infra_pids"]:
        command = " ".join(psutil.Process(pid).cmdline())  # redis retitles: `redis-server ip:port`
        if "redis" in command and (f":{port}" in command or f" {port} " in command):
            return pid
    raise AssertionError(f"no redis among {run['infra_pids']}")


def matcher_metrics(stack) -> dict[str, float]:
    port = stack.run_file()["matcher_port"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {}
    for line in text.splitlines():
        if line.startswith("autopay_matcher_"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def received_amounts(stack) -> list[int]:
    """Amounts (so'm) of every `credit.received` stored in the CREDITS stream."""
    import nats

    async def read() -> list[int]:
        client = await nats.connect(**stack.nats_connect_options())
        try:
            js = client.jetstream()
            info = await js.stream_info("AUTOPAY_CREDITS")
            amounts = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg("AUTOPAY_CREDITS", seq)
                if msg.subject.endswith(".received"):
                    amounts.append(json.loads(msg.data)["credit"]["amount_tiyin"] // 100)
            return amounts
        finally:
            await client.drain()

    return asyncio.run(read())


def deliveries_logged(stack, offset: int) -> list[int]:
    """`deliveries` of every "credit decided after redeliveries" the matcher logged since
    `offset` of its log."""
    log = (stack.state_dir / "logs" / "matcher.log").read_bytes()[offset:].decode(errors="replace")
    found = []
    for line in log.splitlines():
        if "credit decided after redeliveries" in line:
            match = re.search(r'"deliveries": ?(\d+)', line)
            if match:
                found.append(int(match.group(1)))
    return found


@contextmanager
def stopped(pid: int):
    """SIGSTOP `pid` for the block (and SIGCONT it whatever happens)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def check_payment(stack, order_id: str) -> dict | None:
    """The order as check-payment shows it; None on a 5xx (the gateway's first Redis call after
    a Redis restart can fail on a pooled connection the restart closed)."""
    response = stack.post("/api/check-payment", {"order_id": order_id})
    return None if response.status_code >= 500 else response.json()


def create_payments(stack, receiver, base: int) -> dict[str, int]:
    orders = {}
    for _ in range(PAYMENTS):
        response = stack.post(
            "/api/create-payment",
            {
                "amount_base": base,
                "card_last4": stack.info["card"]["card_last4"],
                "gmail": stack.info["card"]["gmail"],
                "webhook_url": receiver.url,
            },
        )
        assert response.status_code == 200, response.text
        orders[response.json()["order_id"]] = response.json()["amount"]
    return orders


# --- the scenarios -------------------------------------------------------------------------------


def run_outage(stack, receiver, scenario: str, base: int) -> dict:
    orders = create_payments(stack, receiver, base)
    run = stack.run_file()
    matcher_pid = run["pids"]["matcher"]
    log_offset = (stack.state_dir / "logs" / "matcher.log").stat().st_size
    before = matcher_metrics(stack)
    redis = redis_pid(stack)

    with stopped(matcher_pid):
        for amount in orders.values():
            stack.send_credit(amount)
        eventually(
            lambda: set(orders.values()) <= set(received_amounts(stack)),
            60,
            "every credit in the CREDITS stream",
        )
        time.sleep(2)  # the orders and mail cursors reach Redis's append-only file (1 s fsync)
        outage_started = time.monotonic()
        if scenario == "frozen":
            os.kill(redis, signal.SIGSTOP)
        else:
            os.kill(run["supervisor_pid"], signal.SIGSTOP)  # no restart during the outage
            os.kill(redis, signal.SIGKILL)
        time.sleep(3)
    try:  # the matcher runs again here, while Redis is still unavailable
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
        assert not any(receiver.for_order(o) for o in orders), "paid while Redis was away?"
    finally:
        if scenario == "frozen":
            os.kill(redis, signal.SIGCONT)
        else:
            os.kill(run["supervisor_pid"], signal.SIGCONT)
    outage_s = time.monotonic() - outage_started

    for order_id in orders:
        eventually(lambda oid=order_id: receiver.for_order(oid), 180, f"webhook for {order_id}")
    recovered_s = time.monotonic() - outage_started - outage_s
    for order_id, amount in orders.items():
        checked = eventually(lambda oid=order_id: check_payment(stack, oid), 20, "check-payment")
        assert checked["status"] == "paid", checked
        assert checked["amount"] == amount
        bodies = [json.loads(r["body"]) for r in receiver.for_order(order_id)]
        assert {b["status"] for b in bodies} == {"paid"}

    after = matcher_metrics(stack)
    retries = {}
    for cause in ("redis", "timeout", "publish", "error"):
        key = f'autopay_matcher_retries_total{{cause="{cause}"}}'
        retries[cause] = after.get(key, 0) - before.get(key, 0)
    deliveries = deliveries_logged(stack, log_offset)
    figures = {
        "scenario": scenario,
        "payments": len(orders),
        "outage_s": round(outage_s, 1),
        "recovered_s": round(recovered_s, 1),
        "max_deliveries": max(deliveries, default=1),
        "deliveries": sorted(deliveries),
        "retries": retries,
        "all_paid": True,
        "webhooks": sum(len(receiver.for_order(o)) for o in orders),
        "stack_defaults": STACK_DEFAULTS,
    }
    print(json.dumps(figures))
    past_old_limit = figures["max_deliveries"] > OLD_MAX_DELIVER
    assert past_old_limit or outage_s > OLD_WINDOW_S[scenario], figures
    return figures


@pytest.mark.timeout(OUTAGE_S + 300)
def test_frozen_redis_for_longer_than_any_redelivery_window_loses_no_credit(stack, receiver):
    """Fault: Redis hangs (SIGSTOP) for `AUTOPAY_OUTAGE_SECONDS` while credits wait in the
    stream and the matcher retries them. Every order ends paid, every webhook arrives."""
    run_outage(stack, receiver, "frozen", base=70_000)


@pytest.mark.timeout(OUTAGE_S + 300)
def test_killed_redis_restarted_from_its_aof_loses_no_credit(stack, receiver):
    """Fault: Redis is killed (SIGKILL) and stays down for `AUTOPAY_OUTAGE_SECONDS`, then the
    supervisor restarts it on the same port from its append-only file. Every order ends paid,
    every webhook arrives."""
    before = redis_pid(stack)
    run_outage(stack, receiver, "killed", base=80_000)
    assert redis_pid(stack) != before
