"""Mailbox health as mail-ingest writes it to Redis.

Key: `{prefix}:mailbox:{mailbox_id}:health`, a hash with `status` (`connected`, `auth_failed`,
`down`...) and `last_mail_at` (epoch seconds or ISO 8601).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis

from autopay_store.keys import Keys


@dataclass(frozen=True)
class Health:
    status: str | None
    last_mail_at: datetime | None


def _parse_time(value: str | None) -> datetime | None:
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


class MailboxHealthReader:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def key(self, mailbox_id: str) -> str:
        return self.keys.global_key("mailbox", mailbox_id, "health")

    async def read(self, mailbox_ids: list[str]) -> dict[str, Health]:
        unique = list(dict.fromkeys(mailbox_ids))
        if not unique:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for mailbox_id in unique:
                pipe.hmget(self.key(mailbox_id), "status", "last_mail_at")
            rows = await pipe.execute()
        return {
            mailbox_id: Health(status or None, _parse_time(last))
            for mailbox_id, (status, last) in zip(unique, rows, strict=True)
        }
