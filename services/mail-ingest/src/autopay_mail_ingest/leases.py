"""This replica's view of its mailbox leases: each mailbox is watched by one replica at a time.

The leases themselves (keys, scripts, heartbeat) are `autopay_store.mailbox_state.LeaseStore`;
why Redis holds them is written there. Here is how mail-ingest fences its own work with them:

- Each replica caps its share at `ceil(registered / live replicas) + slack` and sheds leases
  above the cap, so mailboxes spread over the replicas instead of staying with whoever started
  first (`supervisor.py`).
- A `Lease` is locally valid until `sent + lease - margin`, where `sent` is when the
  acquire/renew command left (so the local view always ends before Redis' expiry). The watcher
  checks it before publishing and advances the cursor only through a script that checks the
  lease key still names this replica. A replica that lost its lease therefore never moves the
  cursor; if it published just before noticing, the event's deterministic `Nats-Msg-Id` and the
  dedup markers make the new holder's re-publish a no-op.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from autopay_store.mailbox_state import LeaseStore


class LeaseLost(Exception):
    """This replica no longer holds the mailbox's lease: stop without touching its state."""


@dataclass(eq=False)
class Lease:
    """This replica's lease on one mailbox, shared by the supervisor and the mailbox's watcher."""

    mailbox_id: str
    key: str
    owner: str
    valid_until: float = 0.0
    """Event-loop time after which the lease must be treated as lost."""
    renewed_at: float = 0.0
    """Event-loop time when its last acquire or renew was sent."""
    lost: bool = field(default=False)

    @classmethod
    def taken(cls, leases: LeaseStore, mailbox_id: str) -> Lease:
        """The lease `leases` (this replica's) just acquired on `mailbox_id`."""
        return cls(mailbox_id, leases.lease_key(mailbox_id), leases.replica_id)

    def valid(self) -> bool:
        return not self.lost and asyncio.get_running_loop().time() < self.valid_until

    def check(self) -> None:
        if not self.valid():
            raise LeaseLost(self.mailbox_id)
