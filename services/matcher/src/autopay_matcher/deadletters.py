"""Dead letters: a message on the credit subject that is not a `credit.received` is recorded in
the DEADLETTERS stream (its bytes, headers and where it came from) before it is let go of.

The consumer publishes the dead letter, waits for its PubAck, and only then terminates the
original; if the dead letter is not stored, the original is nacked and comes back. The dead
letter's id is derived from the original's stream and sequence, so recording the same message
twice (a term lost after the PubAck) stores one dead letter. An operator lists and replays them
with `autopay admin dead-letters`.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Literal

from nats.aio.msg import Msg

from autopay_contracts import Credit, CreditReceived, DeadLetter, is_sandbox_mailbox, parse_event

SERVICE = "matcher"
MAX_DATA_BYTES = 256 * 1024
"""Larger originals keep only their start in the dead letter (the stream's message limit);
the whole message is still in its source stream under `source_seq`."""
MAX_REASON_CHARS = 500

PoisonKind = Literal["undecodable", "unexpected_type", "wrong_world"]
POISON_KINDS: tuple[PoisonKind, ...] = ("undecodable", "unexpected_type", "wrong_world")


class NotACredit(Exception):
    """The message does not decode into a `credit.received` event."""

    def __init__(self, kind: PoisonKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def decode_credit(data: bytes) -> Credit:
    """The credit a `credit.received` message carries; raises `NotACredit` otherwise."""
    try:
        event = parse_event(data)
    except Exception as exc:
        raise NotACredit("undecodable", f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(event, CreditReceived):
        raise NotACredit("unexpected_type", f"a {event.event_type} event on the credit subject")
    credit = event.credit
    if credit.test_mode != is_sandbox_mailbox(credit.mailbox_id):
        # Live and sandbox credits never cross: a test credit only under a sandbox mailbox id
        # (where only test orders are), a live one only under a live mailbox id.
        world = "test" if credit.test_mode else "live"
        raise NotACredit("wrong_world", f"a {world} credit on mailbox {credit.mailbox_id}")
    return credit


def dead_letter(msg: Msg, reason: str, recorded_at: datetime) -> DeadLetter:
    meta = msg.metadata
    data = msg.data or b""
    return DeadLetter(
        service=SERVICE,
        source_stream=meta.stream,
        source_subject=msg.subject,
        source_seq=meta.sequence.stream,
        reason=reason[:MAX_REASON_CHARS],
        recorded_at=recorded_at,
        data=base64.b64encode(data[:MAX_DATA_BYTES]).decode(),
        data_truncated=len(data) > MAX_DATA_BYTES,
        source_headers=dict(msg.headers or {}),
    )
