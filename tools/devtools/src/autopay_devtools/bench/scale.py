"""Horizontal scale of one durable consumer: two service processes on the same streams and the
same durable ÷ one process, both in the same run.

- `matcher_scale_2x`: credits decided per second by 2 `python -m autopay_matcher` processes ÷
  by 1. matcher.py's run (orders preloaded, credits queued, then the matchers started, all
  with `AUTOPAY_CONSUMER_NAME` `matcher`; every outcome checked once they have stopped).
- `notifier_scale_2x`: fast webhooks per second by 2 `python -m autopay_notifier` processes ÷
  by 1. notifier.py's round (paid orders queued, then the notifiers started on the durable
  `notifier`; 16 fast receivers; every webhook checked once they have stopped).

With two processes the checks are the point: a credit decided twice (two `credit.matched`,
two `order.paid`) or a webhook delivered twice raises, so the run fails instead of counting it.

Every run has a namespace and a key prefix of its own, so no run sees another's streams or
keys. Each figure is the median of `ROUNDS` rounds; a round measures 1 and 2 processes one
after the other and the order flips every round (1, 2; 2, 1; ...). The processes are started
together, but a second Python process takes a moment to start, so the first has a short head
start. Both processes, nats-server and redis-server share the same cores: on a 2-core machine
the ceiling is what one process leaves idle, and a figure near it says that the durable
spreads the work over both, not that replicas scale beyond the cores (see
docs/benchmarks.md). The 1- and 2-process runs are separate runs, so other work on the machine
that comes or goes between them moves the ratio: the alternating rounds are for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from autopay_contracts import Namespace
from autopay_devtools.bench import alternating, matcher, notifier

ROUNDS = int(os.environ.get("AUTOPAY_BENCH_SCALE_ROUNDS", "2"))
MATCHER_ORDERS = int(os.environ.get("AUTOPAY_BENCH_SCALE_MATCHER_ORDERS", "20000"))
MATCHER_CREDITS = int(os.environ.get("AUTOPAY_BENCH_SCALE_MATCHER_CREDITS", "10000"))
NOTIFIER_ORDERS = int(os.environ.get("AUTOPAY_BENCH_SCALE_NOTIFIER_ORDERS", "10000"))
PROCESSES = (1, 2)


def _log(message: str) -> None:
    print(f"[bench scale] {message}", file=sys.stderr, flush=True)


def matcher_rates(nats_url: str, redis_url: str) -> dict[int, float]:
    """Median credits/s per process count; each run a fresh namespace and key prefix."""
    rates: dict[int, list[float]] = {count: [] for count in PROCESSES}
    for round_ in range(ROUNDS):
        for count in alternating(PROCESSES, round_):
            plan = matcher.Plan(
                ns=Namespace(f"benchscm{count}p{round_}"),
                prefix=f"benchscm-{count}p-{round_}",
                orders_waiting=MATCHER_ORDERS,
                credits_sent=MATCHER_CREDITS,
            )
            rate, _ = asyncio.run(matcher.measure(nats_url, redis_url, plan, processes=count))
            rates[count].append(rate)
        _log(f"matcher round {round_ + 1}: " + _round_line(rates, "credits/s"))
    return {count: statistics.median(values) for count, values in rates.items()}


def notifier_rates(nats_url: str, redis_url: str, workdir: Path) -> dict[int, float]:
    """Median fast webhooks/s per process count (notifier.py's `_run` makes each run's
    namespace and key prefix)."""
    receivers = notifier._Receivers(notifier.MERCHANTS)
    rates: dict[int, list[float]] = {count: [] for count in PROCESSES}
    try:
        for round_ in range(ROUNDS):
            for count in alternating(PROCESSES, round_):
                rate = notifier._run(
                    nats_url,
                    redis_url,
                    receivers,
                    workdir,
                    with_hole=False,
                    processes=count,
                    orders=NOTIFIER_ORDERS,
                )
                rates[count].append(rate)
            _log(f"notifier round {round_ + 1}: " + _round_line(rates, "webhooks/s"))
    finally:
        with contextlib.suppress(Exception):
            receivers.stop()
    return {count: statistics.median(values) for count, values in rates.items()}


def _round_line(rates: dict[int, list[float]], unit: str) -> str:
    return ", ".join(f"{count} proc {values[-1]:.0f} {unit}" for count, values in rates.items())


def run() -> dict[str, float]:
    from autopay_testing.servers import start_nats, start_redis

    work = Path(tempfile.mkdtemp(prefix="autopay-bench-scale-"))
    with start_nats(work / "nats") as nats_server, start_redis(work / "redis") as redis:
        _log(
            f"{ROUNDS} round(s); matcher {MATCHER_ORDERS} orders, {MATCHER_CREDITS} credits; "
            f"notifier {NOTIFIER_ORDERS} orders to {notifier.MERCHANTS} receivers"
        )
        try:
            credits = matcher_rates(nats_server.url, redis.url)
            webhooks = notifier_rates(nats_server.url, redis.url, work)
        except BaseException:
            _log(f"failed; the notifier logs are kept in {work}")
            raise
    if not os.environ.get("AUTOPAY_BENCH_SCALE_KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    return {
        "matcher_scale_2x": round(credits[2] / credits[1], 3),
        "matcher_credits_per_s_1proc": round(credits[1], 1),
        "matcher_credits_per_s_2proc": round(credits[2], 1),
        "notifier_scale_2x": round(webhooks[2] / webhooks[1], 3),
        "notifier_webhooks_per_s_1proc": round(webhooks[1], 1),
        "notifier_webhooks_per_s_2proc": round(webhooks[2], 1),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run()))
