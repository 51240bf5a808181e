"""The development commands, added to the shipped `autopay` command through the entry-point
group `autopay.commands` (see this package's pyproject.toml and `autopay_cli.main`): `autopay dev
...` (the local stack, its bank mail, its mailbox passwords, its fake Telegram) and `autopay
asyncapi`. They exist where autopay-devtools is installed (`make install`), never in an image."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from autopay_cli.config import STACK_FILE, load_settings, read_json
from autopay_devtools.botchat import bot_cmd

dev = typer.Typer(no_args_is_help=True, help="The local stack: everything on this machine.")
dev.add_typer(bot_cmd, name="bot")

StateDir = Annotated[Path, typer.Option("--state-dir", help="The dev stack's state directory.")]


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False))


def _banner(stack: dict, state_dir: Path = Path(".autopay")) -> None:
    card = stack["card"]
    seed_body = json.dumps(
        {
            "amount": 50037,
            "card_last4": card["card_last4"],
            "gmail": card["gmail"],
            "client_user_id": "123456789",
            "client_user_data": {"plan": "premium"},
        }
    )
    base_body = json.dumps(
        {"amount_base": 50000, "card_last4": card["card_last4"], "gmail": card["gmail"]}
    )
    post = (
        f"  curl -s -X POST {stack['gateway_url']}/api/%s \\\n"
        f"    -H 'x-api-key: {stack['api_key']}' -H 'content-type: application/json' \\\n"
        "    -d '%s'\n"
    )
    typer.echo(
        "\nAutoPay is running.\n"
        f"  gateway:  {stack['gateway_url']}\n"
        f"  API key:  {stack['api_key']}\n"
        f"  test key: {stack['test_api_key']}\n"
        f"  card:     {card['card_last4']} / {card['gmail']}\n\n"
        "Create a payment (the original API: your bot picks the unique amount):\n"
        + post
        % ("create-payment", seed_body)
        + "\nPay it (a bank e-mail lands in the demo mailbox):\n"
        f"  .venv/bin/autopay dev send-credit --state-dir {state_dir} --amount 50037\n\n"
        "Check it:\n"
        + post % ("check-payment", '{"order_id": "10001"}')
        + "\nOr let the server pick a free amount (the response says which):\n"
        + post % ("create-payment", base_body)
        + _bot_banner(stack, state_dir)
        + "\nStop with Ctrl-C.\n"
    )
    sys.stdout.flush()


def _bot_banner(stack: dict, state_dir: Path) -> str:
    bot = stack.get("bot") or {}
    if not bot.get("fake"):
        return "\nThe merchant bot polls Telegram with AUTOPAY_BOT_TOKEN: write to it there.\n"
    return (
        f"\nThe merchant bot runs against a local fake Telegram ({bot['telegram_api_url']}).\n"
        "Join as a merchant with an invite code, then follow its replies:\n"
        f"  .venv/bin/autopay admin invite create --state-dir {state_dir} --json\n"
        f"  .venv/bin/autopay dev bot say --state-dir {state_dir} '/start CODE'\n"
        "(a real bot: export AUTOPAY_BOT_TOKEN=<token from @BotFather> before make run)\n"
    )


@dev.command("up")
def dev_up(
    state_dir: StateDir = Path(".autopay"),
    detach: Annotated[bool, typer.Option(help="Return once ready; run in the background.")] = False,
    nats_cluster: Annotated[
        int | None,
        typer.Option(
            help="NATS nodes: 3 is a local JetStream cluster with the streams at R3; 1 (the"
            " default) one server. A state dir keeps the size it was created with."
        ),
    ] = None,
    redis_cluster: Annotated[
        int | None,
        typer.Option(
            help="Redis masters: 3 is a local Redis Cluster; 1 (the default) one server. A"
            " state dir keeps the size it was created with."
        ),
    ] = None,
    trace_file: Annotated[
        Path | None,
        typer.Option(
            help="Every service appends its finished spans here, as OTLP JSON lines"
            " (AUTOPAY_TRACE_FILE; the OTEL_* variables apply as well)."
        ),
    ] = None,
) -> None:
    """Start NATS, Redis, a demo IMAP mailbox, the four services and the merchant bot."""
    from autopay_devtools import devstack

    if trace_file is not None:  # the services inherit it, through a detached supervisor too
        os.environ["AUTOPAY_TRACE_FILE"] = str(trace_file.resolve())
    try:
        devstack.nats_cluster_size(state_dir, nats_cluster)
        devstack.redis_cluster_size(state_dir, redis_cluster)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if detach:
        try:
            stack = devstack.start_detached(
                state_dir, nats_cluster=nats_cluster, redis_cluster=redis_cluster
            )
        except (RuntimeError, TimeoutError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        _print_json(stack)
        return
    devstack.StackSupervisor(
        state_dir,
        on_ready=lambda stack: _banner(stack, state_dir),
        nats_cluster=nats_cluster,
        redis_cluster=redis_cluster,
    ).run()


@dev.command("down")
def dev_down(state_dir: StateDir = Path(".autopay")) -> None:
    """Stop a stack started with `dev up --detach`."""
    from autopay_devtools import devstack

    if not devstack.stop(state_dir):
        typer.echo("no running stack found", err=True)


@dev.command("send-credit")
def dev_send_credit(
    amount: Annotated[int, typer.Option(help="Amount in so'm.")],
    state_dir: StateDir = Path(".autopay"),
    card_last4: Annotated[str | None, typer.Option("--card-last4")] = None,
    fmt: Annotated[str, typer.Option("--format")] = "uzcard-email",
    gmail: Annotated[str | None, typer.Option(help="Mailbox to deliver to.")] = None,
) -> None:
    """Append a realistic bank notification of an incoming transfer to the demo mailbox."""
    from autopay_devtools.mailbox import append_credit

    stack = read_json(state_dir / STACK_FILE)
    imap = dict(stack["imap"])
    if gmail:
        imap["user"] = gmail
    raw = asyncio.run(
        append_credit(
            imap,
            amount_som=amount,
            card_last4=card_last4 or stack["card"]["card_last4"],
            to=imap["user"],
            fmt=fmt,
        )
    )
    message_id = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in raw.decode().splitlines()
            if ln.startswith("Message-ID")
        ),
        None,
    )
    _print_json({"appended": True, "amount": amount, "message_id": message_id})


@dev.command("imap-password")
def dev_imap_password(
    gmail: Annotated[str, typer.Option(help="The demo mailbox's address.")],
    password: Annotated[str, typer.Option(help="Its new password on the local IMAP server.")],
    state_dir: StateDir = Path(".autopay"),
) -> None:
    """Change a mailbox's password on the stack's IMAP server and drop its connections: what
    happens when a Gmail App Password is revoked (set it back to recover)."""
    import os
    import signal

    from autopay_cli.config import RUN_FILE
    from autopay_devtools.devstack import IMAP_PASSWORDS_FILE

    run = read_json(state_dir / RUN_FILE)
    path = state_dir / IMAP_PASSWORDS_FILE
    passwords = read_json(path) if path.exists() else {}
    passwords[gmail] = password
    path.write_text(json.dumps(passwords))
    path.chmod(0o600)
    os.kill(run["pids"]["imap"], signal.SIGUSR1)
    _print_json({"gmail": gmail, "changed": True})


@dev.command("sandbox-merchant")
def dev_sandbox_merchant(
    state_dir: StateDir = Path(".autopay"),
    name: Annotated[str, typer.Option()] = "Sandbox shop",
    card_last4: Annotated[str, typer.Option("--card-last4")] = "4242",
    gmail: Annotated[str, typer.Option()] = "sandbox@gmail.com",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A test-mode merchant with a sandbox card, in the running dev stack. Its key pays
    nothing real: `POST /api/sandbox/transfer` is the bank there."""
    from autopay_cli.operations import Operator

    async def run():
        async with Operator(load_settings(state_dir)) as op:
            return await op.create_sandbox_merchant(name, card_last4, gmail)

    created, sandbox_card = asyncio.run(run())
    result = {
        "merchant_id": created.merchant.merchant_id,
        "test_api_key": created.api_key,
        "card": {"card_last4": sandbox_card.card_last4, "gmail": sandbox_card.gmail},
    }
    if as_json:
        _print_json(result)
    else:
        typer.echo(f"merchant_id: {result['merchant_id']}\ntest_api_key: {created.api_key}")
        typer.echo(f"card: {sandbox_card.card_last4} {sandbox_card.gmail}")


def asyncapi(
    out: Annotated[Path, typer.Option(help="Directory for the documents.")] = Path("docs/asyncapi"),
    check: Annotated[bool, typer.Option(help="Fail if the committed documents are stale.")] = False,
) -> None:
    """Write the AsyncAPI documents generated from the services' FastStream apps."""
    from autopay_devtools.asyncapi import generate

    stale = generate(out, check=check)
    if check and stale:
        typer.echo(f"stale AsyncAPI documents: {', '.join(stale)}; run `make asyncapi`", err=True)
        raise typer.Exit(1)
