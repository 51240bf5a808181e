"""`autopay admin dead-letters`: inspect the messages a service could not take, and replay one.

A dead letter (`deadletter.recorded`, stream DEADLETTERS) holds the original message's bytes,
headers, subject and stream sequence. `replay` publishes those bytes again to the original
subject and stream, so the service that refused them gets them again (after a fix, or with
corrected bytes from `--data-file`). The replay carries a new `Nats-Msg-Id` (the original's
would be dropped by JetStream as a duplicate inside the stream's duplicate window) and an
`autopay-replay-of` header naming the dead letter.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from autopay_cli.config import load_settings
from autopay_contracts import DeadLetter, Namespace, parse_event
from autopay_contracts.streams import DEADLETTERS
from autopay_runtime.settings import nats_connect_options

app = typer.Typer(no_args_is_help=True, help="Messages a service could not take: list, replay.")

StateDir = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Use this dev stack; else AUTOPAY_* variables."),
]
REPLAY_HEADER = "autopay-replay-of"


@dataclass(frozen=True)
class StoredDeadLetter:
    seq: int
    stored_at: datetime
    letter: DeadLetter

    def original(self) -> bytes:
        return base64.b64decode(self.letter.data)

    def as_json(self) -> dict:
        return {
            "seq": self.seq,
            "stored_at": self.stored_at.isoformat(),
            **self.letter.model_dump(mode="json", exclude={"type", "schema_version"}),
        }


async def list_dead_letters(js, ns: Namespace, limit: int | None = None) -> list[StoredDeadLetter]:
    """The dead letters in stream order (the last `limit` of them when given)."""
    from nats.js.api import ConsumerConfig, DeliverPolicy

    stream = DEADLETTERS.name(ns)
    info = await js.stream_info(stream)
    if info.state.messages == 0:
        return []
    first, last = info.state.first_seq, info.state.last_seq
    start = max(first, last - limit + 1) if limit else first
    sub = await js.subscribe(
        ns.all_of(DEADLETTERS.aggregate),
        stream=stream,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start),
    )
    found: list[StoredDeadLetter] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=10)
            meta = msg.metadata
            event = parse_event(msg.data)
            if isinstance(event, DeadLetter):
                found.append(StoredDeadLetter(meta.sequence.stream, meta.timestamp, event))
            if meta.sequence.stream >= last or meta.num_pending == 0:
                return found
    finally:
        await sub.unsubscribe()


async def get_dead_letter(js, ns: Namespace, seq: int) -> StoredDeadLetter:
    raw = await js.get_msg(DEADLETTERS.name(ns), seq)
    event = parse_event(raw.data)
    if not isinstance(event, DeadLetter):
        raise ValueError(f"message {seq} of {DEADLETTERS.name(ns)} is not a dead letter")
    return StoredDeadLetter(seq, raw.time, event)


async def replay(js, ns: Namespace, seq: int, data: bytes | None = None):
    """Publish dead letter `seq`'s original bytes (or `data`) to its original subject and
    stream; returns the PubAck. A dead letter whose copy was truncated is replayed from the
    original still in its source stream."""
    stored = await get_dead_letter(js, ns, seq)
    letter = stored.letter
    if data is None:
        if letter.data_truncated:
            data = (await js.get_msg(letter.source_stream, letter.source_seq)).data or b""
        else:
            data = stored.original()
    headers = {k: v for k, v in letter.source_headers.items() if not k.lower().startswith("nats-")}
    headers["Nats-Msg-Id"] = f"replay:{letter.event_id}:{uuid.uuid4().hex}"
    headers[REPLAY_HEADER] = str(seq)
    return await js.publish(
        letter.source_subject, data, stream=letter.source_stream, headers=headers, timeout=5
    )


def _preview(raw: bytes, size: int = 120) -> str:
    text = raw[:size].decode("utf-8", errors="replace")
    return text + ("…" if len(raw) > size else "")


async def _with_jetstream(nats_url: str, work):
    import nats

    client = await nats.connect(**nats_connect_options(nats_url))
    try:
        return await work(client.jetstream())
    finally:
        await client.drain()


@app.command("list")
def list_command(
    limit: Annotated[int | None, typer.Option(help="Only the last N dead letters.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    state_dir: StateDir = None,
) -> None:
    """List the dead letters, oldest first."""
    settings = load_settings(state_dir)
    letters = asyncio.run(
        _with_jetstream(settings.nats_url, lambda js: list_dead_letters(js, settings.ns, limit))
    )
    for stored in letters:
        if as_json:
            typer.echo(json.dumps(stored.as_json(), ensure_ascii=False))
            continue
        letter = stored.letter
        typer.echo(
            f"{stored.seq}\t{letter.recorded_at.isoformat()}\t{letter.service}\t"
            f"{letter.source_stream}#{letter.source_seq}\t{letter.source_subject}\t"
            f"{letter.reason}\t{_preview(stored.original())!r}"
        )
    if not letters and not as_json:
        typer.echo("no dead letters")


@app.command("replay")
def replay_command(
    seq: Annotated[int, typer.Option("--seq", help="The dead letter's sequence (see list).")],
    data_file: Annotated[
        Path | None,
        typer.Option("--data-file", help="Publish these bytes instead of the original ones."),
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Publish a dead letter's original message again to its original subject."""
    settings = load_settings(state_dir)
    data = data_file.read_bytes() if data_file is not None else None
    ack = asyncio.run(
        _with_jetstream(settings.nats_url, lambda js: replay(js, settings.ns, seq, data))
    )
    typer.echo(json.dumps({"replayed": seq, "stream": ack.stream, "seq": ack.seq}))
