from __future__ import annotations

from faststream.nats import NatsBroker
from nats.js.api import PubAck

from autopay_contracts import STREAMS, Event, Namespace

JSON_HEADERS = {"content-type": "application/json"}


class EventPublisher:
    """Publishes an event to its JetStream stream and returns only once JetStream stored it."""

    def __init__(self, broker: NatsBroker, ns: Namespace, timeout_s: float = 5.0) -> None:
        self.broker = broker
        self.ns = ns
        self.timeout_s = timeout_s
        self._streams = {spec.aggregate: spec.name(ns) for spec in STREAMS}

    async def publish(self, event: Event) -> PubAck:
        ack = await self.broker.publish(
            event.to_bytes(),
            event.subject(self.ns),
            headers={**JSON_HEADERS, **event.headers()},
            stream=self._streams[event.aggregate],
            timeout=self.timeout_s,
        )
        if ack is None:  # pragma: no cover - publish with stream= always returns the PubAck
            raise RuntimeError("JetStream did not acknowledge the event")
        return ack
