"""Reading the CREDITS stream for received credits that have no decision event after them.

The stream is the record of what was decided: a credit is decided once a `credit.matched`,
`credit.unmatched` or `credit.ambiguous` for its id is stored after its `credit.received`. Redis
is not asked (it may have lost its state). The scan reads forward from a sequence with an
ephemeral ordered consumer (nothing is acknowledged, the durable consumer is not touched) up to
the stream's last message when the scan began, and keeps only the credits still undecided, so
its memory is the credits in flight, not the stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from autopay_contracts import CreditAmbiguous, CreditMatched, CreditReceived, CreditUnmatched


def _event_name(event_type: str) -> str:
    return event_type.split(".", 1)[1]


RECEIVED = _event_name(CreditReceived.event_type)
DECIDED = frozenset(
    _event_name(cls.event_type) for cls in (CreditMatched, CreditUnmatched, CreditAmbiguous)
)


@dataclass(frozen=True)
class Received:
    """The first `credit.received` message of a credit not (yet) followed by a decision."""

    seq: int
    stored_at: datetime
    data: bytes


@dataclass
class Scan:
    undecided: dict[str, Received] = field(default_factory=dict)
    """Credit id → its first received message with no decision stored after it."""
    last_seq: int = 0
    """Every message up to this sequence was read."""
    read: int = 0
    unreadable: int = 0
    """Received messages without a readable credit id (the consumer dead-letters those)."""


async def scan_credits(
    js: JetStreamContext,
    stream: str,
    subject: str,
    after_seq: int,
    idle_timeout_s: float = 10.0,
) -> Scan:
    """The credits received after `after_seq` that have no decision after them. `subject`
    must cover every subject of the stream (the credit aggregate), so the scan's last message
    is the stream's."""
    info = await js.stream_info(stream)
    last = info.state.last_seq
    scan = Scan(last_seq=max(after_seq, 0))
    if info.state.messages == 0 or last <= after_seq:
        scan.last_seq = max(after_seq, last)
        return scan
    start = max(after_seq + 1, info.state.first_seq)
    sub = await js.subscribe(
        subject,
        stream=stream,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start),
    )
    try:
        while True:
            msg = await sub.next_msg(timeout=idle_timeout_s)
            meta = msg.metadata
            seq = meta.sequence.stream
            scan.read += 1
            event = msg.subject.rsplit(".", 1)[-1]
            if event == RECEIVED:
                credit_id = _credit_id(msg.data)
                if credit_id is None:
                    scan.unreadable += 1
                else:
                    scan.undecided.setdefault(credit_id, Received(seq, meta.timestamp, msg.data))
            elif event in DECIDED and (credit_id := _credit_id(msg.data)) is not None:
                scan.undecided.pop(credit_id, None)
            if seq >= last or meta.num_pending == 0:
                scan.last_seq = max(seq, last)
                return scan
    finally:
        await sub.unsubscribe()


def _credit_id(data: bytes) -> str | None:
    try:
        credit_id = json.loads(data)["credit"]["credit_id"]
    except Exception:
        return None
    return credit_id if isinstance(credit_id, str) and credit_id else None
