"""Publishing events to JetStream through FastStream, awaiting the PubAck."""

from __future__ import annotations

from faststream.nats import NatsBroker

from autopay_contracts import STREAMS, Event, Namespace


class PublishFailed(Exception):
    """JetStream did not acknowledge the event (timeout, no stream, broker down)."""


class EventPublisher:
    """Events go out as their JSON bytes (pydantic's encoder), tagged `application/json`."""

    def __init__(self, broker: NatsBroker, ns: Namespace, timeout_s: float) -> None:
        self.broker = broker
        self.ns = ns
        self.timeout_s = timeout_s
        self._streams = {spec.aggregate: spec.name(ns) for spec in STREAMS}

    async def publish(self, event: Event) -> None:
        try:
            await self.broker.publish(
                event.to_bytes(),
                event.subject(self.ns),
                headers={**event.headers(), "content-type": "application/json"},
                stream=self._streams[event.aggregate],
                timeout=self.timeout_s,
            )
        except Exception as exc:
            raise PublishFailed(f"{event.event_type}: {type(exc).__name__}") from exc
