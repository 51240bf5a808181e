"""Reading and writing a test's JetStream streams directly (what a service stored, what it gets)."""

from __future__ import annotations

import json

from nats.js.errors import NotFoundError

from autopay_contracts import Event, Namespace, stream_for


async def publish_event(nats_client, ns: Namespace, event: Event, msg_id: str | None = None):
    """Store `event` in its stream as a service would (its own `Nats-Msg-Id` unless given)."""
    headers = event.headers() if msg_id is None else {**event.headers(), "Nats-Msg-Id": msg_id}
    return await nats_client.jetstream().publish(
        event.subject(ns), event.to_bytes(), headers=headers, stream=stream_for(event).name(ns)
    )


async def stored(nats_client, stream: str, subject_suffix: str = "") -> list[dict]:
    """Every message of `stream` whose subject ends with `subject_suffix`, decoded as JSON, in
    stream order (messages that are not JSON are skipped)."""
    js = nats_client.jetstream()
    info = await js.stream_info(stream)
    found: list[dict] = []
    if not info.state.messages:
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(stream, seq)
        except NotFoundError:  # a deleted message
            continue
        if msg.subject.endswith(subject_suffix):
            try:
                found.append(json.loads(msg.data))
            except ValueError:
                continue
    return found
