"""Publishing contract events to JetStream, one way for every service.

`EventPublisher` declares a FastStream publisher per event type the service emits (subject
pattern with the owner token as a wildcard, the pydantic schema), so the AsyncAPI document
generated from the service's app lists exactly what it publishes. Each publish goes to the
event's concrete subject, in its stream, with its deterministic `Nats-Msg-Id`, and awaits the
PubAck: a publish that raises was not stored.
"""

from __future__ import annotations

from collections.abc import Iterable

from faststream.nats import NatsBroker
from nats.js.api import PubAck

from autopay_contracts import Event, Namespace, stream_for


class PublishFailed(Exception):
    """JetStream did not acknowledge the event (timeout, no stream, broker down)."""


class EventPublisher:
    def __init__(
        self,
        broker: NatsBroker,
        ns: Namespace,
        event_types: Iterable[type[Event]],
        timeout_s: float = 5.0,
    ) -> None:
        self.ns = ns
        self.timeout_s = timeout_s
        self._publishers = {
            cls: broker.publisher(
                cls.subject_pattern(ns),
                schema=cls,
                title=f"{cls.event_type}:publish",
                description=(cls.__doc__ or "").strip() or None,
            )
            for cls in event_types
        }

    async def publish(self, event: Event) -> PubAck:
        publisher = self._publishers.get(type(event))
        if publisher is None:
            raise TypeError(f"{type(event).__name__} is not declared for this publisher")
        try:
            return await publisher.publish(
                event.to_bytes(),
                subject=event.subject(self.ns),
                headers={"content-type": "application/json", **event.headers()},
                stream=stream_for(event).name(self.ns),
                timeout=self.timeout_s,
            )
        except Exception as exc:
            raise PublishFailed(f"{event.event_type}: {type(exc).__name__}: {exc}") from exc
