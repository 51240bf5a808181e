"""mail-ingest's Redis state: cursors, dedup markers, raw evidence and mailbox health.

Nothing here holds personal mail: only the events' identities and the bytes of bank
candidates are written, so a mailbox full of large personal mail costs no Redis memory.

Keys (prefix = `AUTOPAY_REDIS_PREFIX`, `<m>` = mailbox id):

- `<prefix>:mailbox:<m>:cursor` — hash `uidvalidity`, `last_uid`: the highest UID passed (its
  event acknowledged by JetStream, or nothing to publish: personal mail). Written only by the
  mailbox's lease holder (see `leases.py`) and never moved backwards within one UIDVALIDITY.
- `<prefix>:mailbox:<m>:lease` — the replica id watching the mailbox (see `leases.py`);
  `<prefix>:ingest:replicas` — ZSET of live replicas.
- `<prefix>:mailbox:<m>:seen:<key>` — dedup marker (TTL `dedup_ttl_days`) per Message-ID
  (`mid:…`), raw-bytes digest (`raw:…`) or credit fingerprint (`fp:…`).
- `<prefix>:mailbox:<m>:evidence:<sha256>` — the RFC 822 bytes (TTL `evidence_retention_days`);
  this key is the events' `evidence_ref`. Kept only for bank candidates (by their headers)
  read whole, so each value is at most `max_message_bytes`; personal mail and candidates over
  the cap are never stored (their events carry no `evidence_ref`).
- `<prefix>:mailbox:<m>:health` — hash read by the gateway's my-cards: `status`
  (`connecting|connected|down|auth_failed|throttled|config_error`), `gmail`, `detail`,
  `updated_at`, `last_connected_at`, `last_mail_at`, `credits`, `rejected`, `parse_failures`
  (times ISO 8601 UTC; counters are integers).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import redis.asyncio as aioredis

from autopay_store.keys import Keys

_SAVE_CURSOR = """
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then
  return 0
end
local current = redis.call('HMGET', KEYS[1], 'uidvalidity', 'last_uid')
if current[1] == ARGV[1] and tonumber(current[2] or '0') >= tonumber(ARGV[2]) then
  return 1
end
redis.call('HSET', KEYS[1], 'uidvalidity', ARGV[1], 'last_uid', ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Cursor:
    uidvalidity: int
    last_uid: int


class IngestStore:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, *, evidence_ttl_s: int, dedup_ttl_s: int
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.evidence_ttl_s = evidence_ttl_s
        self.dedup_ttl_s = dedup_ttl_s
        self._save_cursor = redis.register_script(_SAVE_CURSOR)

    def _key(self, mailbox_id: str, *parts: str) -> str:
        return self.keys.global_key("mailbox", mailbox_id, *parts)

    def health_key(self, mailbox_id: str) -> str:
        return self._key(mailbox_id, "health")

    def evidence_key(self, mailbox_id: str, digest: str) -> str:
        return self._key(mailbox_id, "evidence", digest)

    # --- cursor -------------------------------------------------------------------------------

    async def cursor(self, mailbox_id: str) -> Cursor | None:
        data = await self.redis.hgetall(self._key(mailbox_id, "cursor"))
        if not data or "uidvalidity" not in data:
            return None
        return Cursor(int(data["uidvalidity"]), int(data.get("last_uid", 0)))

    async def save_cursor(
        self, mailbox_id: str, cursor: Cursor, lease: tuple[str, str] | None = None
    ) -> bool:
        """Advance the cursor; with `lease` = (lease key, owner), only while the lease key still
        names that owner (fencing). Returns False when the lease is gone."""
        key, owner = lease if lease is not None else ("", "")
        saved = await self._save_cursor(
            keys=[self._key(mailbox_id, "cursor"), key or self._key(mailbox_id, "lease")],
            args=[cursor.uidvalidity, cursor.last_uid, owner],
        )
        return bool(saved)

    # --- dedup --------------------------------------------------------------------------------

    def _seen_keys(self, mailbox_id: str, message_key: str, fingerprint: str | None) -> list[str]:
        keys = [self._key(mailbox_id, "seen", message_key)]
        if fingerprint:
            keys.append(self._key(mailbox_id, "seen", "fp:" + fingerprint))
        return keys

    async def already_seen(
        self, mailbox_id: str, message_key: str, fingerprint: str | None
    ) -> bool:
        keys = self._seen_keys(mailbox_id, message_key, fingerprint)
        return bool(await self.redis.exists(*keys))

    async def mark_seen(self, mailbox_id: str, message_key: str, fingerprint: str | None) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self._seen_keys(mailbox_id, message_key, fingerprint):
                pipe.set(key, 1, ex=self.dedup_ttl_s)
            await pipe.execute()

    # --- evidence -----------------------------------------------------------------------------

    async def keep_evidence(self, mailbox_id: str, digest: str, raw: bytes) -> str:
        key = self.evidence_key(mailbox_id, digest)
        await self.redis.set(key, raw, ex=self.evidence_ttl_s)
        return key

    # --- health -------------------------------------------------------------------------------

    async def set_status(
        self,
        mailbox_id: str,
        gmail: str,
        status: str,
        at: datetime,
        detail: str | None = None,
        connected: bool = False,
    ) -> None:
        mapping = {"status": status, "gmail": gmail, "detail": detail or "", "updated_at": at}
        if connected:
            mapping["last_connected_at"] = at
        await self.redis.hset(
            self.health_key(mailbox_id),
            mapping={
                k: v.isoformat() if isinstance(v, datetime) else v for k, v in mapping.items()
            },
        )

    async def record_mail(self, mailbox_id: str, at: datetime, counters: tuple[str, ...]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.health_key(mailbox_id), "last_mail_at", at.isoformat())
            for counter in counters:
                pipe.hincrby(self.health_key(mailbox_id), counter, 1)
            await pipe.execute()

    async def forget_health(self, mailbox_id: str) -> None:
        await self.redis.delete(self.health_key(mailbox_id))
