"""`autopay`: the operator's and developer's command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from autopay_cli import devstack
from autopay_cli.botchat import bot_cmd
from autopay_cli.config import STACK_FILE, load_settings, read_json
from autopay_cli.deadletters import app as dead_letters

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
dev = typer.Typer(no_args_is_help=True, help="The local stack: everything on this machine.")
admin = typer.Typer(no_args_is_help=True, help="Operator actions on merchants and cards.")
merchant = typer.Typer(no_args_is_help=True, help="Merchants, their keys and subscriptions.")
card = typer.Typer(no_args_is_help=True, help="Cards connected for a merchant.")
secrets_cmd = typer.Typer(no_args_is_help=True, help="Secrets stored encrypted (Fernet keys).")
integrator = typer.Typer(no_args_is_help=True, help="NATS credentials for integrators.")
tariff_cmd = typer.Typer(no_args_is_help=True, help="Tariffs: price, payment limit, days, rate.")
nats_cmd = typer.Typer(no_args_is_help=True, help="NATS JetStream provisioning.")
invite_cmd = typer.Typer(no_args_is_help=True, help="Invite codes for signing up in the bot.")
app.add_typer(dev, name="dev")
dev.add_typer(bot_cmd, name="bot")
app.add_typer(admin, name="admin")
admin.add_typer(merchant, name="merchant")
admin.add_typer(card, name="card")
admin.add_typer(secrets_cmd, name="secrets")
admin.add_typer(integrator, name="integrator")
admin.add_typer(tariff_cmd, name="tariff")
admin.add_typer(dead_letters, name="dead-letters")
admin.add_typer(invite_cmd, name="invite")
app.add_typer(nats_cmd, name="nats")

StateDir = Annotated[Path, typer.Option("--state-dir", help="The dev stack's state directory.")]
OptionalStateDir = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Use this dev stack; else AUTOPAY_* variables."),
]
QuarantineSeconds = Annotated[
    int,
    typer.Option(
        "--quarantine-seconds",
        envvar="AUTOPAY_QUARANTINE_SECONDS",
        help="How long an amount stays held after its order ends (as the services).",
    ),
]


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
    from autopay_cli.mailbox import append_credit

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
    from autopay_cli.devstack import IMAP_PASSWORDS_FILE

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


def _tariff_json(tariff) -> dict:
    from dataclasses import asdict

    return asdict(tariff)


@tariff_cmd.command("create")
def tariff_create(
    name: Annotated[str, typer.Option()],
    price: Annotated[int, typer.Option(help="So'm per period.")],
    max_payments: Annotated[int, typer.Option("--max-payments")],
    days: Annotated[int, typer.Option()],
    rate: Annotated[float, typer.Option("--rate-per-second", help="API requests/s.")] = 20.0,
    burst: Annotated[int, typer.Option(help="API requests at once.")] = 40,
    state_dir: OptionalStateDir = None,
) -> None:
    """Create a tariff, or replace the one of that name."""
    from autopay_cli.operations import Operator
    from autopay_store.tariffs import Tariff

    try:
        tariff = Tariff(name, price, max_payments, days, rate, burst)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    async def run():
        async with Operator(load_settings(state_dir)) as op:
            return await op.tariffs.save(tariff)

    _print_json(_tariff_json(asyncio.run(run())))


@tariff_cmd.command("list")
def tariff_list(state_dir: OptionalStateDir = None) -> None:
    """Every tariff, as JSON."""
    from autopay_cli.operations import Operator

    async def run():
        async with Operator(load_settings(state_dir)) as op:
            return await op.tariffs.all()

    _print_json({"tariffs": [_tariff_json(t) for t in asyncio.run(run())]})


@tariff_cmd.command("set")
def tariff_set(
    merchant_id: Annotated[str, typer.Option("--merchant")],
    tariff: Annotated[str, typer.Option()],
    state_dir: OptionalStateDir = None,
) -> None:
    """Put a merchant on a tariff from now: its payment limit, days and rate limit."""
    from autopay_cli.operations import Operator, now
    from autopay_store.tariffs import put_on_tariff

    async def run():
        async with Operator(load_settings(state_dir)) as op:
            found = await op.tariffs.get(tariff)
            if found is None:
                raise KeyError(f"no tariff {tariff!r}")
            if await op.accounts.get_merchant(merchant_id) is None:
                raise KeyError(f"no merchant {merchant_id}")
            return await put_on_tariff(op.accounts, merchant_id, found, now())

    try:
        merchant = asyncio.run(run())
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(1) from exc
    _print_json(
        {
            "merchant_id": merchant_id,
            "tariff_name": merchant.tariff_name,
            "max_payments": merchant.max_payments,
            "expires_at": merchant.expires_at.isoformat(),
            "rate_per_s": merchant.rate_per_s,
            "burst": merchant.rate_burst,
        }
    )


@invite_cmd.command("create")
def invite_create(
    uses: Annotated[int, typer.Option(help="Sign-ups the code allows.")] = 1,
    days: Annotated[float, typer.Option(help="Days until the code expires.")] = 7,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    state_dir: OptionalStateDir = None,
) -> None:
    """Issue an invite code for the merchant bot's sign-up; prints it once."""
    from autopay_cli.operations import now
    from autopay_runtime.connections import open_redis
    from autopay_store.invites import Invites

    if uses < 1 or days <= 0:
        typer.echo("error: --uses must be at least 1 and --days positive", err=True)
        raise typer.Exit(2)
    settings = load_settings(state_dir)

    async def run():
        redis = open_redis(settings.redis_url)
        try:
            return await Invites(redis, settings.keys).issue(uses, days, now=now())
        finally:
            await redis.aclose()

    invite = asyncio.run(run())
    result = {"code": invite.code, "uses": invite.uses, "expires_at": invite.expires_at.isoformat()}
    if as_json:
        _print_json(result)
    else:
        for key, value in result.items():
            typer.echo(f"{key}: {value}")


@merchant.command("create")
def merchant_create(
    name: Annotated[str, typer.Option()],
    tariff: Annotated[str, typer.Option()] = "Asosiy",
    max_payments: Annotated[int, typer.Option("--max-payments")] = 100_000,
    days: Annotated[int, typer.Option()] = 30,
    test: Annotated[bool, typer.Option("--test", help="Test-mode merchant (sandbox key).")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    state_dir: OptionalStateDir = None,
) -> None:
    """Create a merchant; prints its API key and webhook secret once."""
    from autopay_cli.operations import Operator

    async def run():
        async with Operator(load_settings(state_dir)) as op:
            return await op.create_merchant(name, tariff, max_payments, days, test)

    created = asyncio.run(run())
    result = {
        "merchant_id": created.merchant.merchant_id,
        "api_key": created.api_key,
        "webhook_secret": created.webhook_secret,
    }
    if as_json:
        _print_json(result)
    else:
        for key, value in result.items():
            typer.echo(f"{key}: {value}")


@merchant.command("rotate-key")
def merchant_rotate_key(
    merchant_id: Annotated[str, typer.Option("--merchant")],
    test: Annotated[bool, typer.Option("--test")] = False,
    state_dir: OptionalStateDir = None,
) -> None:
    """Issue a new API key; the previous one stops working at once."""
    from autopay_cli.operations import Operator

    async def run():
        async with Operator(load_settings(state_dir)) as op:
            if await op.accounts.get_merchant(merchant_id) is None:
                raise KeyError(merchant_id)
            return await op.accounts.rotate_api_key(merchant_id, test=test)

    _print_json({"merchant_id": merchant_id, "api_key": asyncio.run(run())})


@merchant.command("subscription")
def merchant_subscription(
    merchant_id: Annotated[str, typer.Option("--merchant")],
    tariff: Annotated[str, typer.Option()] = "Asosiy",
    max_payments: Annotated[int, typer.Option("--max-payments")] = 100_000,
    days: Annotated[int, typer.Option()] = 30,
    state_dir: OptionalStateDir = None,
) -> None:
    """Set a merchant's subscription (tariff, payment limit, days from now)."""
    from autopay_cli.operations import Operator, now

    async def run():
        async with Operator(load_settings(state_dir)) as op:
            return await op.accounts.set_subscription(
                merchant_id, tariff_name=tariff, max_payments=max_payments, days=days, now=now()
            )

    sub = asyncio.run(run())
    _print_json(
        {
            "merchant_id": merchant_id,
            "tariff_name": sub.tariff_name,
            "max_payments": sub.max_payments,
            "payments_used": sub.payments_used,
            "expires_at": sub.expires_at.isoformat(),
        }
    )


@merchant.command("rate-limit")
def merchant_rate_limit(
    merchant_id: Annotated[str, typer.Option("--merchant")],
    per_s: Annotated[float, typer.Option("--per-second", help="Sustained requests/s.")],
    burst: Annotated[int, typer.Option(help="Requests allowed at once.")],
    state_dir: OptionalStateDir = None,
) -> None:
    """Set a merchant's API rate limit (default 20/s, bursts of 40)."""
    from autopay_cli.operations import Operator

    async def run():
        async with Operator(load_settings(state_dir)) as op:
            return await op.accounts.set_rate_limit(merchant_id, per_s=per_s, burst=burst)

    updated = asyncio.run(run())
    _print_json(
        {"merchant_id": merchant_id, "rate_per_s": updated.rate_per_s, "burst": updated.rate_burst}
    )


@card.command("add")
def card_add(
    merchant_id: Annotated[str, typer.Option("--merchant")],
    card_last4: Annotated[str, typer.Option("--card-last4")],
    gmail: Annotated[str, typer.Option()],
    app_password: Annotated[str | None, typer.Option("--app-password")] = None,
    allow_forwarded: Annotated[bool, typer.Option("--allow-forwarded")] = False,
    alias: Annotated[
        list[str] | None,
        typer.Option(
            "--alias",
            help="Another address that delivers to this mailbox (repeatable); replaces the "
            "declared ones. Without it they stay.",
        ),
    ] = None,
    state_dir: OptionalStateDir = None,
) -> None:
    """Connect a card (and its Gmail mailbox) for a merchant. A mailbox (any spelling of its
    address) belongs to the first merchant that connects a card on it."""
    from autopay_cli.operations import Operator
    from autopay_contracts import is_card_last4
    from autopay_store.accounts import CardTaken, MailboxTaken

    if not is_card_last4(card_last4):
        typer.echo("error: --card-last4 must be exactly four digits (0-9)", err=True)
        raise typer.Exit(2)
    if any("@" not in a for a in alias or ()):
        typer.echo("error: --alias must be an e-mail address", err=True)
        raise typer.Exit(2)
    settings = load_settings(state_dir)
    if state_dir is not None and app_password is None:
        app_password = read_json(state_dir / "run.json")["imap_password"]
    aliases = tuple(alias) if alias else None

    async def run():
        async with Operator(settings) as op:
            return await op.add_card(
                merchant_id, card_last4, gmail, app_password, allow_forwarded, aliases
            )

    try:
        added = asyncio.run(run())
    except (CardTaken, MailboxTaken) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    _print_json({"id": added.card_id, "card_last4": added.card_last4, "gmail": added.gmail})


@admin.command("rebuild")
def admin_rebuild(
    state_dir: OptionalStateDir = None,
    quarantine_s: QuarantineSeconds = 900,
) -> None:
    """After Redis was lost: restore everything it needs from JetStream. The accounts
    (merchants, key hashes, cards, mailbox owners and passwords, secrets, tariffs,
    subscriptions) from the ACCOUNTS bucket, then what `rebuild-orders` restores, then each
    restored merchant's usage counted from ORDERS, and the webhooks still pending (due now).
    Idempotent; never moves state backwards."""
    from autopay_cli.operations import connections
    from autopay_contracts.streams import ACCOUNTS
    from autopay_store.deliveries import DeliveryKeys, DeliveryStore
    from autopay_store.journal import AccountJournal
    from autopay_store.orders import OrderBook
    from autopay_store.rebuild import rebuild

    settings = load_settings(state_dir)

    async def run():
        async with connections(settings) as (redis, js):
            bucket = await js.key_value(ACCOUNTS.name(settings.ns))
            journal = AccountJournal(redis, settings.keys, bucket)
            book = OrderBook(redis, settings.keys, quarantine_s=quarantine_s)
            deliveries = DeliveryStore(redis, DeliveryKeys(settings.redis_prefix))
            return await rebuild(js, settings.ns, book, journal, deliveries)

    report = asyncio.run(run())
    _print_json(
        {
            "accounts": {
                "restored": report.accounts.restored,
                "present": report.accounts.present,
                "merchants": report.accounts.merchants,
            },
            "usage": report.usage,
            "deliveries": report.deliveries,
            "orders": report.orders.orders,
            "kept": report.orders.kept,
            "aged_out": report.orders.aged_out,
            "decisions": report.orders.decisions,
            "ledger": report.orders.ledger,
            "order_sequence": report.orders.order_sequence,
        }
    )


@admin.command("rebuild-orders")
def admin_rebuild_orders(
    state_dir: OptionalStateDir = None,
    quarantine_s: QuarantineSeconds = 900,
) -> None:
    """Rebuild the orders in Redis from the ORDERS and CREDITS streams (after Redis was lost).

    Restores every order (status, payment, holds and quarantines, locators, deadlines of waiting
    orders), the matcher's credit decisions and the order id sequence. Idempotent; never moves
    an order back or lowers the sequence. The accounts are restored by `admin rebuild`, which
    also does all of this."""
    from autopay_cli.operations import connections
    from autopay_store.orders import OrderBook
    from autopay_store.rebuild import rebuild_orders

    settings = load_settings(state_dir)

    async def run():
        async with connections(settings) as (redis, js):
            book = OrderBook(redis, settings.keys, quarantine_s=quarantine_s)
            return await rebuild_orders(js, settings.ns, book)

    report = asyncio.run(run())
    _print_json(
        {
            "orders": report.orders,
            "kept": report.kept,
            "aged_out": report.aged_out,
            "decisions": report.decisions,
            "ledger": report.ledger,
            "order_sequence": report.order_sequence,
        }
    )


@integrator.command("create")
def integrator_create(
    merchant_id: Annotated[str, typer.Option("--merchant")],
    state_dir: OptionalStateDir = None,
    password: Annotated[
        str | None, typer.Option(help="Outside the dev stack: the password to put in the entry.")
    ] = None,
) -> None:
    """NATS credentials that read only this merchant's events (orders, webhooks, credit
    decisions), as plain subscriptions. In the dev stack (--state-dir) the user is added to the
    server's configuration and the server reloads it; elsewhere the command prints the user
    entry to add to the server's `authorization` users (then reload nats-server)."""
    import secrets as random_secrets

    from autopay_cli import credentials
    from autopay_contracts.permissions import (
        inbox_prefix,
        integrator_permissions,
        integrator_user,
    )
    from autopay_runtime.settings import url_with_credentials

    settings = load_settings(state_dir)
    user = integrator_user(merchant_id)
    allowed = integrator_permissions(settings.ns, merchant_id)
    result = {
        "merchant_id": merchant_id,
        "user": user,
        "inbox_prefix": inbox_prefix(user),
        "subscribe": list(allowed.subscribe),
    }
    if state_dir is not None:
        run = read_json(state_dir / "run.json")
        nats_dir = state_dir / "nats"
        secret = credentials.add_integrator(nats_dir, merchant_id)
        stack = credentials.StackCredentials.load_or_create(run)
        stack.write_nats_auth(nats_dir, settings.ns)
        for pid in run.get("nats_pids") or run["infra_pids"][:1]:  # every node of a cluster
            credentials.reload_nats(pid)
        base = ",".join(run.get("nats_urls") or [f"nats://127.0.0.1:{run['nats_port']}"])
        result |= {"password": secret, "nats_url": url_with_credentials(base, user, secret)}
    else:
        secret = password or random_secrets.token_urlsafe(18)
        entry = {"user": user, "password": secret, "permissions": allowed.as_nats()}
        result |= {"password": secret, "nats_user_entry": entry}
    _print_json(result)


@secrets_cmd.command("reencrypt")
def admin_secrets_reencrypt(
    state_dir: OptionalStateDir = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Re-encrypt every stored secret (webhook signing secrets, app passwords, the passwords in
    MAILBOX_CONFIG) under the first key of AUTOPAY_SECRET_KEYS. Rotate a key by putting the new
    one first everywhere, running this, then removing the old one. Idempotent."""
    from autopay_cli.operations import connections
    from autopay_contracts.streams import ACCOUNTS
    from autopay_store.journal import AccountJournal
    from autopay_store.reencrypt import reencrypt_secrets

    settings = load_settings(state_dir)

    async def run():
        async with connections(settings) as (redis, js):
            bucket = await js.key_value(ACCOUNTS.name(settings.ns))
            journal = AccountJournal(redis, settings.keys, bucket)
            return await reencrypt_secrets(
                redis, settings.keys, settings.secret_box(), js, settings.ns, journal
            )

    report = asyncio.run(run()).as_dict()
    if as_json:
        _print_json(report)
    else:
        typer.echo(
            f"re-encrypted {report['reencrypted']} (republished {report['republished']}), "
            f"already current {report['current']}, changed meanwhile {report['changed_meanwhile']}"
        )
        for where in report["unreadable"]:
            typer.echo(f"unreadable with the configured keys: {where}")
    if report["unreadable"]:
        raise typer.Exit(1)


@admin.command("migrate-mailboxes")
def admin_migrate_mailboxes(
    state_dir: OptionalStateDir = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Move state stored under mailbox ids of the old address rule (dots, +tags and
    googlemail.com were significant) to the normalized mailbox ids, and give every mailbox its
    owner record. Mailboxes with cards of several merchants are reported, not moved, and stay
    closed to new cards until settled. Idempotent: run it once after upgrading."""
    from autopay_cli.operations import connections
    from autopay_store.migrations import migrate_mailboxes

    settings = load_settings(state_dir)

    async def run():
        async with connections(settings) as (redis, js):
            return await migrate_mailboxes(redis, settings.keys, js, settings.ns)

    report = asyncio.run(run()).as_dict()
    if as_json:
        _print_json(report)
        return
    for moved in report["moved"]:
        typer.echo(f"moved {', '.join(moved['from'])} → {moved['mailbox_id']} ({moved['gmail']})")
    for conflict in report["conflicts"]:
        typer.echo(
            f"conflict: {conflict['gmail']} has cards of merchants "
            f"{', '.join(conflict['merchants'])}; left as it is"
        )
    counts = {k: v for k, v in report.items() if k not in ("moved", "conflicts")}
    typer.echo(" ".join(f"{k}={v}" for k, v in counts.items()))


@app.command("parse-mail")
def parse_mail(
    files: Annotated[list[Path], typer.Argument(help="RFC 822 files (.eml).")],
    mailbox: Annotated[str | None, typer.Option(help="The mailbox address; default: To.")] = None,
    allow_forwarded: Annotated[bool, typer.Option("--allow-forwarded")] = False,
    alias: Annotated[
        list[str] | None,
        typer.Option("--alias", help="Another address the mailbox receives as (repeatable)."),
    ] = None,
) -> None:
    """Classify bank notifications; one JSON object per file, in order. A refused mail's
    `reason` starts with the refusal (`forged`, `replayed`, `misaligned`, ...)."""
    from autopay_bankmail.report import parse_mail_records

    for record in parse_mail_records(files, mailbox, allow_forwarded, alias or ()):
        _print_json(record)


@nats_cmd.command("provision")
def nats_provision(
    nats_url: Annotated[str, typer.Option(envvar="AUTOPAY_NATS_URL")] = "nats://127.0.0.1:4222",
    namespace: Annotated[str, typer.Option(envvar="AUTOPAY_NAMESPACE")] = "autopay",
    replicas: Annotated[int, typer.Option()] = 1,
    nats_user: Annotated[str, typer.Option(envvar="AUTOPAY_NATS_USER")] = "",
    nats_password: Annotated[str, typer.Option(envvar="AUTOPAY_NATS_PASSWORD")] = "",
) -> None:
    """Declare every JetStream stream (the only component that does)."""
    from autopay_cli.operations import provision
    from autopay_runtime.settings import url_with_credentials

    url = url_with_credentials(nats_url, nats_user, nats_password)
    _print_json({"streams": asyncio.run(provision(url, namespace, replicas))})


AUTH_CONFIG = Path("deploy/kubernetes/components/nats-cluster/auth.conf")


@nats_cmd.command("auth-config")
def nats_auth_config(
    out: Annotated[Path, typer.Option(help="Where to write it.")] = AUTH_CONFIG,
    namespace: Annotated[str, typer.Option(envvar="AUTOPAY_NAMESPACE")] = "autopay",
    check: Annotated[bool, typer.Option(help="Fail if the file is not up to date.")] = False,
) -> None:
    """Write the NATS server's `authorization` block: a user per service with exactly its
    subjects, and the admin. Passwords are references to the server's environment
    (NATS_PASSWORD_GATEWAY, ...), so the file holds no secret. Compose and Kubernetes use it."""
    from autopay_contracts import Namespace
    from autopay_contracts.permissions import deployed_authorization

    text = deployed_authorization(Namespace(namespace))
    if check:
        if not out.exists() or out.read_text() != text:
            typer.echo(f"{out} is stale; run `autopay nats auth-config`", err=True)
            raise typer.Exit(1)
        return
    out.write_text(text)
    typer.echo(f"wrote {out}")


@app.command("asyncapi")
def asyncapi(
    out: Annotated[Path, typer.Option(help="Directory for the documents.")] = Path("docs/asyncapi"),
    check: Annotated[bool, typer.Option(help="Fail if the committed documents are stale.")] = False,
) -> None:
    """Write the AsyncAPI documents generated from the services' FastStream apps."""
    from autopay_cli.asyncapi import generate

    stale = generate(out, check=check)
    if check and stale:
        typer.echo(f"stale AsyncAPI documents: {', '.join(stale)}; run `make asyncapi`", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
