"""The ledger consumer: every credit decision, rejection and dismissal of the CREDITS stream
becomes (or updates) a record of the merchant's transactions ledger (`autopay_store.ledger`).

A durable pull consumer of its own, apart from the credit consumer, so a slow or failing ledger
write never delays a payment. Writes are idempotent (a record is keyed by its credit or
rejection id and never goes back from `matched`), so a redelivery is harmless; a failure
(Redis down) nacks the message and it comes back.

Driven by nats-py directly, batch by batch, like the credit consumer: it reads every message
of the stream, half of them `credit.received` that change no ledger record, and FastStream's
per-message machinery cost as much CPU as the matcher's own decisions. A batch is written in
stream order, one message after the other (a dismissal must follow the record it dismisses);
a `credit.received` is acked without being decoded.
"""

from __future__ import annotations

from collections.abc import Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from autopay_contracts import CreditReceived, Namespace, parse_event
from autopay_runtime.logging import get_logger
from autopay_runtime.pulling import PullConsumer
from autopay_store.ledger import Ledger, replay_ledger
from autopay_store.mailboxes import MailboxOwners

ACK_WAIT_S = 30
RETRY_DELAY_S = 2.0
NOT_IN_THE_LEDGER = CreditReceived.event_type.rsplit(".", 1)[-1]
"""The last subject token of the one credit event the ledger never records (`received`)."""


def ledger_config() -> ConsumerConfig:
    """The ledger durable's settings (also in the AsyncAPI document): from the stream's start,
    so a new ledger consumer projects every credit event kept."""
    return ConsumerConfig(ack_wait=ACK_WAIT_S, deliver_policy=DeliverPolicy.ALL)


class LedgerConsumer:
    def __init__(
        self,
        jetstream: Callable[[], JetStreamContext],
        ledger: Ledger,
        owners: MailboxOwners,
        ns: Namespace,
        *,
        stream: str,
        subject: str,
        durable: str,
        batch: int = 100,
        fetch_timeout_s: float = 1.0,
    ) -> None:
        self.ledger = ledger
        self.owners = owners
        self.ns = ns
        self._pull = PullConsumer(
            jetstream,
            self.handle,
            stream=stream,
            subject=subject,
            durable=durable,
            config=ledger_config(),
            batch=batch,
            fetch_timeout_s=fetch_timeout_s,
            retry_delay_s=RETRY_DELAY_S,
        )
        self._log = get_logger(task="ledger")

    async def start(self) -> None:
        await self._pull.start()

    async def stop(self) -> None:
        await self._pull.stop()

    async def handle(self, msg: Msg) -> None:
        """Project one message; it is acked once written (or known to hold nothing to write),
        nacked with a delay when the write failed."""
        if msg.subject.rsplit(".", 1)[-1] == NOT_IN_THE_LEDGER:
            await msg.ack()
            return
        try:
            event = parse_event(msg.data)
        except (ValueError, ValidationError) as exc:
            # The credit consumer dead-letters what it cannot read; the ledger just skips it.
            self._log.warning("unreadable credit event skipped by the ledger", error=str(exc)[:200])
            await msg.ack()
            return
        try:
            await replay_ledger(event, self.ledger, self.owners)
        except Exception:
            self._log.exception("ledger write failed; retried", event_type=event.event_type)
            await msg.nak(delay=RETRY_DELAY_S)
            return
        await msg.ack()
