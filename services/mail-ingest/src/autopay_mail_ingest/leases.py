"""Mailbox leases in Redis: each mailbox is watched by exactly one replica at a time.

Design (chosen over a NATS KV or a coordinator service because Redis already holds the cursor
the lease must fence, and its key expiry gives "a dead replica loses its leases" for free):

- `<prefix>:mailbox:<m>:lease` = the holder's replica id, set with `SET NX PX lease_ms`. The
  holder renews all its leases every `lease/3` with a compare-and-extend script and deletes
  them with compare-and-delete on clean shutdown. A replica that dies (SIGKILL, partition)
  stops renewing; Redis expires its leases and the other replicas take them in their next round.
- `<prefix>:ingest:replicas` = ZSET of live replica ids scored by heartbeat expiry (Redis server
  time, so clock skew between hosts does not matter). Each replica caps its share at
  `ceil(registered / live replicas) + slack` and sheds leases above the cap, so mailboxes spread
  over the replicas instead of staying with whoever started first.
- Fencing: a `Lease` is locally valid until `sent + lease - margin`, where `sent` is when the
  acquire/renew command left (so the local view always ends before Redis' expiry). The watcher
  checks it before publishing and advances the cursor only through a script that checks the
  lease key still names this replica. A replica that lost its lease therefore never moves the
  cursor; if it published just before noticing, the event's deterministic `Nats-Msg-Id` and the
  dedup markers make the new holder's re-publish a no-op.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from autopay_store.keys import Keys

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
return redis.call('ZCARD', KEYS[1])
"""

_BATCH = 500


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
    lost: bool = field(default=False)

    def valid(self) -> bool:
        return not self.lost and asyncio.get_running_loop().time() < self.valid_until

    def check(self) -> None:
        if not self.valid():
            raise LeaseLost(self.mailbox_id)


class LeaseStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys, replica_id: str, lease_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.replica_id = replica_id
        self.lease_ms = max(1, int(lease_s * 1000))
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._heartbeat = redis.register_script(_HEARTBEAT)

    def lease_key(self, mailbox_id: str) -> str:
        return self.keys.global_key("mailbox", mailbox_id, "lease")

    @property
    def replicas_key(self) -> str:
        return self.keys.global_key("ingest", "replicas")

    def new_lease(self, mailbox_id: str) -> Lease:
        return Lease(mailbox_id, self.lease_key(mailbox_id), self.replica_id)

    async def heartbeat(self) -> int:
        """Announce this replica alive for one lease time; returns how many replicas are live."""
        live = await self._heartbeat(
            keys=[self.replicas_key], args=[self.replica_id, self.lease_ms]
        )
        return max(1, int(live))

    async def retire(self) -> None:
        await self.redis.zrem(self.replicas_key, self.replica_id)

    async def acquire(self, mailbox_ids: Sequence[str]) -> list[bool]:
        results: list[bool] = []
        for start in range(0, len(mailbox_ids), _BATCH):
            async with self.redis.pipeline(transaction=False) as pipe:
                for mailbox_id in mailbox_ids[start : start + _BATCH]:
                    pipe.set(self.lease_key(mailbox_id), self.replica_id, nx=True, px=self.lease_ms)
                results += [bool(r) for r in await pipe.execute()]
        return results

    async def renew(self, mailbox_ids: Sequence[str]) -> list[bool]:
        results: list[bool] = []
        for start in range(0, len(mailbox_ids), _BATCH):
            async with self.redis.pipeline(transaction=False) as pipe:
                for mailbox_id in mailbox_ids[start : start + _BATCH]:
                    await self._renew(
                        keys=[self.lease_key(mailbox_id)],
                        args=[self.replica_id, self.lease_ms],
                        client=pipe,
                    )
                results += [bool(r) for r in await pipe.execute()]
        return results

    async def release(self, mailbox_ids: Sequence[str]) -> None:
        for start in range(0, len(mailbox_ids), _BATCH):
            async with self.redis.pipeline(transaction=False) as pipe:
                for mailbox_id in mailbox_ids[start : start + _BATCH]:
                    await self._release(
                        keys=[self.lease_key(mailbox_id)], args=[self.replica_id], client=pipe
                    )
                await pipe.execute()

    async def holders(self, mailbox_ids: Sequence[str]) -> dict[str, str | None]:
        if not mailbox_ids:
            return {}
        values = await self.redis.mget([self.lease_key(m) for m in mailbox_ids])
        return dict(zip(mailbox_ids, values, strict=True))
