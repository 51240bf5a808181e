"""Publishing contract events to JetStream, one way for every service.

`EventPublisher` declares a FastStream publisher per event type the service emits (subject
pattern with the owner token as a wildcard, the pydantic schema), so the AsyncAPI document
generated from the service's app lists exactly what it publishes. Each publish goes to the
event's concrete subject, in its stream, with its deterministic `Nats-Msg-Id`, and awaits the
PubAck. A publish that raises may or may not have been stored: a timeout or a lost connection
says nothing about it, only a refusal (no stream listens, JetStream answered with an error) says
it was not. `publish_acked` therefore retries the *same* `Nats-Msg-Id` until a PubAck: a copy
that had landed comes back `duplicate` (within the stream's duplicate window), so the caller
learns the truth instead of guessing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from faststream.nats import NatsBroker
from nats.errors import NoRespondersError
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError
from opentelemetry.context import Context

from autopay_contracts import Event, Namespace, stream_for
from autopay_runtime import tracing
from autopay_runtime.compat.faststream import jetstream


class PublishFailed(Exception):
    """JetStream did not acknowledge the event (timeout, no stream, broker down).

    `refused` is True when JetStream (or NATS) answered that it did not store it; otherwise
    the event may have been stored all the same."""

    refused: bool = False


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
        self._broker = broker
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
            raise _failed(event, exc) from exc

    async def publish_acked(
        self, event: Event, attempts: int = 3, backoff_s: float = 0.1
    ) -> PubAck:
        """`publish`, retried with the same `Nats-Msg-Id` until JetStream acknowledges it
        (`duplicate` when an earlier attempt had landed), at most `attempts` times.

        Raises the last `PublishFailed`; its `refused` is True only when every attempt was
        refused, i.e. when none of them can have stored the event."""
        refused = True
        for attempt in range(1, max(1, attempts) + 1):
            try:
                return await self.publish(event)
            except PublishFailed as exc:
                refused = refused and exc.refused
                if attempt >= attempts:
                    exc.refused = refused
                    raise
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def publish_many(
        self, events: Sequence[Event], parents: Sequence[Context | None] | None = None
    ) -> list[PubAck | PublishFailed]:
        """Publishes the events concurrently through the broker's own JetStream context (same
        subjects, headers and streams as `publish`, without FastStream's per-message publisher
        stack, for hot paths) and waits up to the timeout for every PubAck. Result i is event
        i's PubAck, or the `PublishFailed` saying it may not have been stored.

        With tracing on, event i carries the `traceparent` of `parents[i]` (the trace of the
        message it answers), else of the current span."""
        for event in events:
            if type(event) not in self._publishers:
                raise TypeError(f"{type(event).__name__} is not declared for this publisher")
        js = jetstream(self._broker)
        results: list[PubAck | PublishFailed | None] = [None] * len(events)
        pending: dict[int, asyncio.Future[PubAck]] = {}
        try:
            for i, event in enumerate(events):
                headers = {"content-type": "application/json", **event.headers()}
                tracing.inject(headers, parents[i] if parents is not None else None)
                try:
                    pending[i] = await js.publish_async(
                        event.subject(self.ns),
                        event.to_bytes(),
                        stream=stream_for(event).name(self.ns),
                        headers=headers,
                    )
                except Exception as exc:
                    results[i] = _failed(event, exc)
            if pending:
                await asyncio.wait(pending.values(), timeout=self.timeout_s)
        finally:
            for future in pending.values():
                if not future.done():
                    future.cancel()
        for i, future in pending.items():
            if future.cancelled():
                results[i] = _failed(events[i], TimeoutError("no PubAck in time"))
            elif (error := future.exception()) is not None:
                results[i] = _failed(events[i], error)
            else:
                results[i] = future.result()
        return results  # type: ignore[return-value]


def _failed(event: Event, exc: BaseException) -> PublishFailed:
    failed = PublishFailed(f"{event.event_type}: {type(exc).__name__}: {exc}")
    failed.refused = isinstance(exc, NoRespondersError | NoStreamResponseError | APIError)
    failed.__cause__ = exc
    return failed
