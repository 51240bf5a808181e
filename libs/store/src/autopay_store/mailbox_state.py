"""mail-ingest's Redis state of each mailbox: cursor, lease, dedup markers, evidence, health.

mail-ingest writes all of it; the gateway reads the health for my-cards (`MailboxHealth`), so
both go through this module and nothing else knows these keys.

Nothing here holds personal mail: only the events' identities and the bytes of bank
candidates are written, so a mailbox full of large personal mail costs no Redis memory.

Keys (`Keys`; prefix = `AUTOPAY_REDIS_PREFIX`, `<m>` = mailbox id):

- `<prefix>:mailbox:<m>:cursor` (`mailbox_cursor`) — hash `uidvalidity`, `last_uid`: the
  highest UID passed (its event acknowledged by JetStream, or nothing to publish: personal
  mail). Written only by the mailbox's lease holder and never moved backwards within one
  UIDVALIDITY (`cursor_save.lua`).
- `<prefix>:mailbox:<m>:lease:{<cursor key>}` (`mailbox_lease`) — the replica id watching the
  mailbox, in the cursor's Cluster slot;
  `<prefix>:ingest:replicas` (`ingest_replicas`) — ZSET of live replicas (`LeaseStore`).
- `<prefix>:mailbox:<m>:seen:<key>` (`mailbox_seen`) — dedup marker (TTL `dedup_ttl_days`) per
  Message-ID (`mid:…`), raw-bytes digest (`raw:…`) or credit fingerprint (`fp:…`).
- `<prefix>:mailbox:<m>:evidence:<sha256>` (`mailbox_evidence`) — the RFC 822 bytes (TTL
  `evidence_retention_days`); this key is the events' `evidence_ref`. Kept only for bank
  candidates (by their headers) read whole, so each value is at most `max_message_bytes`;
  personal mail and candidates over the cap are never stored (no `evidence_ref` then).
- `<prefix>:mailbox:<m>:health` (`mailbox_health`) — hash: `status`
  (`connecting|connected|down|auth_failed|throttled|config_error`), `gmail`, `detail`,
  `updated_at`, `last_connected_at`, `last_mail_at`, `credits`, `rejected`, `parse_failures`
  (times ISO 8601 UTC; counters are integers).

Leases (chosen over a NATS KV or a coordinator service because Redis already holds the cursor
the lease must fence, and its key expiry gives "a dead replica loses its leases" for free): a
lease is set with `SET NX PX lease_ms`; the holder renews all its leases every `lease/3` with a
compare-and-extend script and deletes them with compare-and-delete on clean shutdown. A replica
that dies (SIGKILL, partition) stops renewing; Redis expires its leases and the other replicas
take them in their next round. The replicas ZSET is scored by heartbeat expiry in Redis server
time, so clock skew between hosts does not matter. How mail-ingest fences its own work with a
lease is `autopay_mail_ingest.leases`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from autopay_store import scripts
from autopay_store.keys import Keys

_BATCH = 500


@dataclass(frozen=True)
class Cursor:
    uidvalidity: int
    last_uid: int


@dataclass(frozen=True)
class Health:
    """What my-cards shows of a mailbox."""

    status: str | None
    last_mail_at: datetime | None


def _parse_time(value: str | None) -> datetime | None:
    """mail-ingest writes ISO 8601; epoch seconds (older writers, tests) are read too."""
    if not value:
        return None
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class MailboxHealth:
    """The health hash of each mailbox: written by mail-ingest, read by the gateway."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def set_status(
        self,
        mailbox_id: str,
        gmail: str,
        status: str,
        at: datetime,
        detail: str | None = None,
        connected: bool = False,
    ) -> None:
        mapping: dict[str, str | datetime] = {
            "status": status,
            "gmail": gmail,
            "detail": detail or "",
            "updated_at": at,
        }
        if connected:
            mapping["last_connected_at"] = at
        await self.redis.hset(
            self.keys.mailbox_health(mailbox_id),
            mapping={
                k: v.isoformat() if isinstance(v, datetime) else v for k, v in mapping.items()
            },
        )

    async def record_mail(self, mailbox_id: str, at: datetime, counters: tuple[str, ...]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            self.queue_mail(pipe, mailbox_id, at, counters)
            await pipe.execute()

    def queue_mail(
        self,
        pipe: aioredis.client.Pipeline,
        mailbox_id: str,
        at: datetime,
        counters: tuple[str, ...],
    ) -> None:
        """Queue `record_mail`'s commands on `pipe`."""
        key = self.keys.mailbox_health(mailbox_id)
        pipe.hset(key, "last_mail_at", at.isoformat())
        for counter in counters:
            pipe.hincrby(key, counter, 1)

    async def forget(self, mailbox_id: str) -> None:
        await self.redis.delete(self.keys.mailbox_health(mailbox_id))

    async def read(self, mailbox_ids: list[str]) -> dict[str, Health]:
        """The health of each mailbox (status and last mail None when nothing was written)."""
        unique = list(dict.fromkeys(mailbox_ids))
        if not unique:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for mailbox_id in unique:
                pipe.hmget(self.keys.mailbox_health(mailbox_id), "status", "last_mail_at")
            rows = await pipe.execute()
        return {
            mailbox_id: Health(status or None, _parse_time(last))
            for mailbox_id, (status, last) in zip(unique, rows, strict=True)
        }


class IngestStore:
    """A mailbox's cursor, dedup markers and evidence, and its health (`health`)."""

    def __init__(
        self, redis: aioredis.Redis, keys: Keys, *, evidence_ttl_s: int, dedup_ttl_s: int
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.evidence_ttl_s = evidence_ttl_s
        self.dedup_ttl_s = dedup_ttl_s
        self.health = MailboxHealth(redis, keys)
        self._save_cursor = scripts.register(redis, "cursor_save")

    # --- cursor -------------------------------------------------------------------------------

    async def cursor(self, mailbox_id: str) -> Cursor | None:
        data = await self.redis.hgetall(self.keys.mailbox_cursor(mailbox_id))
        if not data or "uidvalidity" not in data:
            return None
        return Cursor(int(data["uidvalidity"]), int(data.get("last_uid", 0)))

    async def save_cursor(
        self, mailbox_id: str, cursor: Cursor, lease: tuple[str, str] | None = None
    ) -> bool:
        """Advance the cursor; with `lease` = (lease key, owner), only while the lease key still
        names that owner (fencing). Returns False when the lease is gone."""
        keys, args = self._cursor_call(mailbox_id, cursor, lease)
        return bool(await self._save_cursor(keys=keys, args=args))

    def _cursor_call(
        self, mailbox_id: str, cursor: Cursor, lease: tuple[str, str] | None
    ) -> tuple[list[str], list[str | int]]:
        key, owner = lease if lease is not None else ("", "")
        return (
            [self.keys.mailbox_cursor(mailbox_id), key or self.keys.mailbox_lease(mailbox_id)],
            [cursor.uidvalidity, cursor.last_uid, owner],
        )

    # --- dedup --------------------------------------------------------------------------------

    def _seen_keys(self, mailbox_id: str, message_key: str, fingerprint: str | None) -> list[str]:
        keys = [self.keys.mailbox_seen(mailbox_id, message_key)]
        if fingerprint:
            keys.append(self.keys.mailbox_seen(mailbox_id, "fp:" + fingerprint))
        return keys

    async def already_seen(
        self,
        mailbox_id: str,
        message_key: str,
        fingerprint: str | None,
        *,
        keep: tuple[str, bytes] | None = None,
    ) -> bool:
        """Whether the mail was handled already. With `keep` (its digest and bytes), the mail
        is kept as evidence in the same round trip, seen or not (the bytes of a repeat are
        evidence too); a failure of either raises, so nothing is published unkept."""
        keys = self._seen_keys(mailbox_id, message_key, fingerprint)
        if keep is None:
            return bool(await self.redis.exists(*keys))
        digest, raw = keep
        # one EXISTS a key: on a Redis Cluster the markers may lie in different slots, and a
        # pipeline's command must keep to one
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists(key)
            pipe.set(self.evidence_key(mailbox_id, digest), raw, ex=self.evidence_ttl_s)
            results = scripts.first_error(await pipe.execute(raise_on_error=False))
        return any(results[: len(keys)])

    async def mark_seen(
        self,
        mailbox_id: str,
        message_key: str,
        fingerprint: str | None,
        *,
        mail_at: datetime | None = None,
        counters: tuple[str, ...] = (),
        cursor: Cursor | None = None,
        lease: tuple[str, str] | None = None,
    ) -> bool:
        """Remember the mail as handled; with `mail_at`, the mailbox's health too (its last
        mail and `counters`, as `MailboxHealth.record_mail`), and with `cursor`, the cursor
        moved past it (as `save_cursor`, fenced by `lease`), all in the same round trip.

        A failure of the seen markers or of the cursor raises: the markers keep a mail from
        being published twice, the cursor from being read again; the health is a figure.
        Returns False when the lease is gone (the cursor did not move), else True. Either may
        land without the other (the markers are written first, but a Cluster sends them to
        other nodes): a cursor past unmarked mail only loses the markers' guard against a
        re-read, which the events' deterministic ids still cover; markers without the cursor
        make the re-read skip the mail."""
        seen = self._seen_keys(mailbox_id, message_key, fingerprint)
        call = self._cursor_call(mailbox_id, cursor, lease) if cursor is not None else None
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in seen:
                pipe.set(key, 1, ex=self.dedup_ttl_s)
            if mail_at is not None:
                self.health.queue_mail(pipe, mailbox_id, mail_at, counters)
            if call is not None:
                self._save_cursor.queue(pipe, *call)
            results = await pipe.execute(raise_on_error=False)
        scripts.first_error(results[: len(seen)])
        if call is None:
            return True
        saved = results[-1]
        if isinstance(saved, NoScriptError):  # a restarted Redis: the script runs once loaded
            saved = await self._save_cursor(keys=call[0], args=call[1])
        elif isinstance(saved, Exception):
            raise saved
        return bool(saved)

    # --- evidence -----------------------------------------------------------------------------

    def evidence_key(self, mailbox_id: str, digest: str) -> str:
        """The events' `evidence_ref` for the mail whose bytes hash to `digest`."""
        return self.keys.mailbox_evidence(mailbox_id, digest)


class LeaseStore:
    """One replica's mailbox leases and its heartbeat in the live-replicas ZSET."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, replica_id: str, lease_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.replica_id = replica_id
        self.lease_ms = max(1, int(lease_s * 1000))
        self._renew = scripts.register(redis, "lease_renew")
        self._release = scripts.register(redis, "lease_release")
        self._heartbeat = scripts.register(redis, "replica_heartbeat")

    def lease_key(self, mailbox_id: str) -> str:
        return self.keys.mailbox_lease(mailbox_id)

    async def heartbeat(self) -> int:
        """Announce this replica alive for one lease time; returns how many replicas are live."""
        live = await self._heartbeat(
            keys=[self.keys.ingest_replicas], args=[self.replica_id, self.lease_ms]
        )
        return max(1, int(live))

    async def retire(self) -> None:
        await self.redis.zrem(self.keys.ingest_replicas, self.replica_id)

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
            calls: list[tuple[list[str], list[str | int]]] = [
                ([self.lease_key(mailbox_id)], [self.replica_id, self.lease_ms])
                for mailbox_id in mailbox_ids[start : start + _BATCH]
            ]
            results += [bool(r) for r in scripts.first_error(await self._renew.many(calls))]
        return results

    async def release(self, mailbox_ids: Sequence[str]) -> None:
        for start in range(0, len(mailbox_ids), _BATCH):
            calls = [
                ([self.lease_key(mailbox_id)], [self.replica_id])
                for mailbox_id in mailbox_ids[start : start + _BATCH]
            ]
            scripts.first_error(await self._release.many(calls))

    async def holders(self, mailbox_ids: Sequence[str]) -> dict[str, str | None]:
        if not mailbox_ids:
            return {}
        values = await scripts.get_many(self.redis, [self.lease_key(m) for m in mailbox_ids])
        return dict(zip(mailbox_ids, values, strict=True))
