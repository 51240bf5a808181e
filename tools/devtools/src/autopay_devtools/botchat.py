"""`autopay dev bot`: talk to the dev stack's merchant bot as a merchant would, through the
stack's fake Telegram Bot API (a real token in `AUTOPAY_BOT_TOKEN` makes the stack use
Telegram itself; then talk to the bot in Telegram)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from autopay_cli.config import STACK_FILE, read_json

bot_cmd = typer.Typer(no_args_is_help=True, help="The merchant bot, through the fake Telegram.")

StateDir = Annotated[Path, typer.Option("--state-dir", help="The dev stack's state dir.")]
Chat = Annotated[int, typer.Option("--chat", help="The Telegram chat (and user) id to be.")]


def _control(state_dir: Path):
    from autopay_testing.telegram import TelegramControl

    bot = read_json(state_dir / STACK_FILE).get("bot") or {}
    if not bot.get("fake"):
        typer.echo("this stack's bot talks to the real Telegram: write to it there", err=True)
        raise typer.Exit(1)
    return TelegramControl(bot["telegram_api_url"])


def _print_replies(control, chat: int, after: int, wait_s: float) -> None:
    """Every bot message after `after` that arrives within `wait_s` (quiet for 1 s ends it)."""
    deadline = time.monotonic() + wait_s
    seen: set[int] = set()
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 1.5:
        for message in control.bot_messages(chat):
            if message.message_id > after and message.message_id not in seen:
                seen.add(message.message_id)
                quiet_since = time.monotonic()
                buttons = [
                    {"text": b.get("text"), "data": b.get("callback_data")}
                    for row in (message.reply_markup or {}).get("inline_keyboard", [])
                    for b in row
                ]
                typer.echo(
                    json.dumps(
                        {
                            "message_id": message.message_id,
                            "text": message.text,
                            "buttons": buttons,
                        },
                        ensure_ascii=False,
                    )
                )
        time.sleep(0.1)


@bot_cmd.command("say")
def say(
    text: Annotated[str, typer.Argument(help="What the merchant writes, e.g. '/start CODE'.")],
    state_dir: StateDir = Path(".autopay"),
    chat: Chat = 1001,
    wait: Annotated[float, typer.Option(help="Seconds to wait for replies.")] = 10.0,
) -> None:
    """Write to the bot; prints its replies, one JSON object per message (with buttons)."""
    with _control(state_dir) as control:
        message_id = control.message(chat, text, user_id=chat)
        _print_replies(control, chat, message_id, wait)


@bot_cmd.command("press")
def press(
    message_id: Annotated[int, typer.Argument(help="The bot message that has the button.")],
    data: Annotated[str, typer.Argument(help="The button's data, as `say` printed it.")],
    state_dir: StateDir = Path(".autopay"),
    chat: Chat = 1001,
    wait: Annotated[float, typer.Option(help="Seconds to wait for replies.")] = 10.0,
) -> None:
    """Press an inline button under a bot message; prints the bot's replies."""
    with _control(state_dir) as control:
        latest = max((m.message_id for m in control.messages(chat)), default=0)
        control.press(chat, message_id, data, user_id=chat)
        _print_replies(control, chat, latest, wait)


@bot_cmd.command("history")
def history(state_dir: StateDir = Path(".autopay"), chat: Chat = 1001) -> None:
    """The chat so far (alerts included)."""
    with _control(state_dir) as control:
        for message in control.messages(chat):
            who = "bot" if message.from_bot else "you"
            typer.echo(f"#{message.message_id} {who}: {message.text}")
