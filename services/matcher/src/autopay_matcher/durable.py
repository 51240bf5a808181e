"""The credit consumer's durable JetStream consumer: created, or brought to this version's
configuration when an older version created it.

`pull_subscribe` alone would bind to an existing durable as it is, so a consumer left by an
older matcher (say with a delivery limit) would keep dropping credits after an upgrade. The
server updates the editable fields of an existing consumer in place (delivery limit, ack wait,
backoff, filter); the others (deliver policy, start sequence) keep their current values, so
an operator's choice there is not refused at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ConsumerInfo
from nats.js.errors import NotFoundError

from autopay_runtime.logging import get_logger
from autopay_runtime.waiting import cancel_and_wait

_EDITABLE = ("ack_wait", "max_deliver", "backoff", "filter_subject", "filter_subjects")


async def ensure_durable(
    js: JetStreamContext, stream: str, subject: str, durable: str, config: ConsumerConfig
) -> ConsumerInfo:
    wanted = dataclasses.replace(
        config, name=durable, durable_name=durable, filter_subject=subject, filter_subjects=None
    )
    try:
        current = await js.consumer_info(stream, durable)
    except NotFoundError:
        return await js.add_consumer(stream, wanted)
    updated = dataclasses.replace(
        current.config, **{field: getattr(wanted, field) for field in _EDITABLE}
    )
    if _same(current.config, updated):
        return current
    info = await js.add_consumer(stream, updated)
    get_logger(consumer=durable).info(
        "durable consumer updated",
        max_deliver=info.config.max_deliver,
        ack_wait_s=info.config.ack_wait,
        was_max_deliver=current.config.max_deliver,
    )
    return info


def _same(current: ConsumerConfig, wanted: ConsumerConfig) -> bool:
    def norm(cfg: ConsumerConfig) -> tuple:
        return (
            cfg.ack_wait,
            cfg.max_deliver,
            tuple(cfg.backoff or ()),
            cfg.filter_subject or None,
            tuple(cfg.filter_subjects or ()),
        )

    return norm(current) == norm(wanted)


async def bind_durable(
    js: JetStreamContext, stream: str, subject: str, durable: str, config: ConsumerConfig
) -> JetStreamContext.PullSubscription:
    """A pull subscription on the durable, made sure of first (`ensure_durable`)."""
    await ensure_durable(js, stream, subject, durable, config)
    return await js.pull_subscribe_bind(durable=durable, stream=stream)


async def end_pull(
    task: asyncio.Task | None, sub: JetStreamContext.PullSubscription | None
) -> None:
    """Stops a pull loop: its task cancelled and waited for, then its subscription dropped
    (the durable stays, with every unacked message to be delivered again)."""
    if task is not None:
        await cancel_and_wait(task)
    if sub is not None:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
