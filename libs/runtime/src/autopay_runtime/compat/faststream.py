"""FastStream internals this code relies on (FastStream 0.7).

A NATS broker keeps the nats-py JetStream context it opened at `connect()` in
`broker.config.connection_state.stream`. The hot paths (the matcher's credit loop, batched
publishes, the stream readiness check, mail-ingest's config feed) use that context directly,
without FastStream's per-message machinery, so they share the broker's connection, its
credentials and its reconnects. Nothing else in the tree reads that attribute.
"""

from __future__ import annotations

from typing import Any

from faststream.exceptions import IncorrectState
from nats.js import JetStreamContext


class BrokerNotConnected(RuntimeError):
    """The broker has no JetStream context yet (before `connect()`, or FastStream changed)."""


def jetstream(broker: Any) -> JetStreamContext:
    """The JetStream context of a connected FastStream `NatsBroker`."""
    try:
        stream = broker.config.connection_state.stream
    except (AttributeError, IncorrectState) as exc:  # IncorrectState: not connected yet
        raise BrokerNotConnected(f"no JetStream context on the broker: {exc}") from exc
    if not isinstance(stream, JetStreamContext):
        raise BrokerNotConnected(f"the broker's JetStream context is {type(stream).__name__}")
    return stream
