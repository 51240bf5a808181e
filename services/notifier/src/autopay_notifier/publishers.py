"""Publishes webhook outcome events to the WEBHOOKS stream (deduplicated by `Nats-Msg-Id`)."""

from __future__ import annotations

import asyncio

import structlog
from faststream.nats import NatsBroker

from autopay_contracts import (
    Event,
    Namespace,
)
from autopay_contracts.permissions import SERVICES
from autopay_runtime.publishing import EventPublisher

log = structlog.get_logger("autopay_notifier")


class WebhookOutcomePublisher:
    def __init__(self, broker: NatsBroker, ns: Namespace, attempts: int = 3) -> None:
        self.publisher = EventPublisher(broker, ns, SERVICES["notifier"].events)
        self.attempts = attempts

    async def publish(self, event: Event) -> None:
        """Best effort with a few retries: the delivery state in Redis is the source of truth,
        the event is the integrators' view of it."""
        for attempt in range(1, self.attempts + 1):
            try:
                await self.publisher.publish(event)
                return
            except Exception as exc:
                if attempt == self.attempts:
                    log.error(
                        "could not publish webhook event",
                        event_type=event.event_type,
                        event_id=event.event_id,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    return
                await asyncio.sleep(0.2 * 2**attempt)
