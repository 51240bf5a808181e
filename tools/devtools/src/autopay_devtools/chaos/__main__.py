"""`python -m autopay_devtools.chaos --state-dir DIR [options]`: see `autopay_devtools.chaos`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from autopay_devtools.chaos.checks import FAILING, clean
from autopay_devtools.chaos.driver import Options, drive, log


def parse(argv: list[str]) -> Options:
    defaults = Options(state_dir=Path())
    parser = argparse.ArgumentParser(
        prog="python -m autopay_devtools.chaos",
        description="Kill the dev stack's services and Redis while orders are paid by bank "
        "mail; print the figures as one JSON line; exit 1 unless every violation count is 0.",
    )
    parser.add_argument("--state-dir", type=Path, required=True, help="a running dev stack's")
    parser.add_argument("--orders", type=int, default=defaults.orders)
    parser.add_argument(
        "--mailboxes", type=int, default=defaults.mailboxes, help="one merchant each"
    )
    parser.add_argument("--cards-per-mailbox", type=int, default=defaults.cards_per_mailbox)
    parser.add_argument(
        "--duration", type=float, default=defaults.duration, help="seconds of load and kills"
    )
    parser.add_argument(
        "--kill-interval", type=float, default=defaults.kill_interval, help="mean seconds"
    )
    parser.add_argument("--redis-kills", type=int, default=defaults.redis_kills)
    parser.add_argument(
        "--nats-kills", type=int, default=defaults.nats_kills, help="of a NATS cluster's nodes"
    )
    parser.add_argument("--settle-timeout", type=float, default=defaults.settle_timeout)
    parser.add_argument(
        "--linger", type=float, default=defaults.linger, help="seconds to listen once settled"
    )
    parser.add_argument("--create-timeout", type=float, default=defaults.create_timeout)
    parser.add_argument("--mail-delay", type=float, default=defaults.mail_delay)
    parser.add_argument(
        "--webhook-delay", type=float, default=defaults.webhook_delay, help="seconds to answer"
    )
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.orders < 1 or args.mailboxes < 1 or not 1 <= args.cards_per_mailbox <= 10:
        parser.error("--orders and --mailboxes must be positive, --cards-per-mailbox 1..10")
    return Options(**vars(args))


def main(argv: list[str] | None = None) -> int:
    opts = parse(sys.argv[1:] if argv is None else argv)
    figures = asyncio.run(drive(opts))
    ok = clean(figures) and not figures["not_ready"] and not figures["chaos_failures"]
    figures["ok"] = ok
    if not ok:
        failing = {name: figures[name] for name in FAILING if figures.get(name)}
        log(f"FAILED: {failing or figures}")
    print(json.dumps(figures), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
