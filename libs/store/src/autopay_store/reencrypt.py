"""`autopay admin secrets reencrypt`: every stored secret moved to the newest key.

`AUTOPAY_SECRET_KEYS` lists Fernet keys, newest first; every key decrypts and the newest
encrypts. Rotating a key is: put the new key first (in every service), run this, then drop the
old key. It re-encrypts, under the newest key:

- each merchant's webhook signing secret and its previous one (kept 24 h after a rotation);
- each mailbox's app password (the owner record, and the key used before owner records existed);
- the app password inside each mailbox's latest `mailbox-config.registered` (the MAILBOX_CONFIG
  stream keeps only the latest per mailbox): it is published again, with a higher revision.

A value already under the newest key is left alone, so running it again changes nothing. Each
Redis value is replaced only if it still holds what was read (a concurrent rotation or a new
password wins). A token that no configured key opens is reported, never dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from nats.js import JetStreamContext

from autopay_contracts import MailboxRegistered, Namespace
from autopay_contracts.streams import MAILBOX_CONFIG
from autopay_store import scripts
from autopay_store.journal import AccountJournal
from autopay_store.keys import Keys, glob_escape
from autopay_store.rebuild import latest_mailbox_config
from autopay_store.secrets import SecretBox

WEBHOOK_SECRET_FIELDS = ("webhook_secret", "previous_webhook_secret")
APP_PASSWORD_FIELD = "app_password"  # noqa: S105 - a field name


@dataclass
class ReencryptReport:
    reencrypted: int = 0
    """Values moved to the newest key."""
    current: int = 0
    """Values already under it."""
    republished: int = 0
    """`mailbox-config.registered` events published again."""
    unreadable: list[str] = field(default_factory=list)
    """Where a token is that no configured key decrypts (left as it is)."""
    changed_meanwhile: int = 0

    def as_dict(self) -> dict:
        return {
            "reencrypted": self.reencrypted,
            "current": self.current,
            "republished": self.republished,
            "unreadable": self.unreadable,
            "changed_meanwhile": self.changed_meanwhile,
        }


class Reencryption:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        box: SecretBox,
        js: JetStreamContext | None = None,
        ns: Namespace | None = None,
        journal: AccountJournal | None = None,
    ) -> None:
        self.journal = journal
        self.redis = redis
        self.keys = keys
        self.box = box
        self.js = js
        self.ns = ns
        self.report = ReencryptReport()
        self._replace_field = scripts.register(redis, "replace_field")
        self._replace_string = scripts.register(redis, "replace_string")

    async def run(self) -> ReencryptReport:
        merchants = glob_escape(self.keys.merchant("")) + "*"
        async for key in self.redis.scan_iter(match=merchants, count=1000, _type="HASH"):
            for name in WEBHOOK_SECRET_FIELDS:  # absent from a merchant's card hashes
                await self._field(key, name)
        owners = glob_escape(self.keys.mailbox_owner("")) + "*"
        async for key in self.redis.scan_iter(match=owners, count=1000, _type="HASH"):
            await self._field(key, APP_PASSWORD_FIELD)
        legacy = glob_escape(self.keys.mailbox("")) + "*:app-password"
        async for key in self.redis.scan_iter(match=legacy, count=1000, _type="STRING"):
            await self._string(key)
        await self._mailbox_config()
        return self.report

    def _rotated(self, token: str, where: str) -> str | None:
        """The token under the newest key, or None when it already is (or cannot be read)."""
        if self.box.is_current(token):
            self.report.current += 1
            return None
        try:
            return self.box.rotate(token)
        except Exception:
            self.report.unreadable.append(where)
            return None

    async def _field(self, key: str, name: str) -> None:
        token = await self.redis.hget(key, name)
        await self._replace(token, f"{key} {name}", self._replace_field, [key], [name])

    async def _string(self, key: str) -> None:
        token = await self.redis.get(key)
        await self._replace(token, key, self._replace_string, [key], [])

    async def _replace(self, token, where: str, script, keys: list, args: list) -> None:
        """Swap `token` for its newest-key version with `script`, if it is still there."""
        if not token:
            return
        new = self._rotated(token, where)
        if new is None:
            return
        if await script(keys=keys, args=[*args, token, new]):
            self.report.reencrypted += 1
            if self.journal is not None:
                await self.journal.record(*keys)
        else:
            self.report.changed_meanwhile += 1

    async def _mailbox_config(self) -> None:
        if self.js is None or self.ns is None:
            return
        latest = await latest_mailbox_config(self.js, self.ns)
        stream = MAILBOX_CONFIG.name(self.ns)
        now_ms = time.time_ns() // 1_000_000
        for event in latest.values():
            if not isinstance(event, MailboxRegistered):
                continue
            where = f"{stream} {event.mailbox_id}"
            new = self._rotated(event.password_encrypted, where)
            if new is None:
                continue
            again = event.model_copy(
                update={"password_encrypted": new, "revision": max(now_ms, event.revision + 1)}
            )
            await self.js.publish(
                again.subject(self.ns),
                again.to_bytes(),
                stream=stream,
                headers=again.headers(),
                timeout=5,
            )
            self.report.reencrypted += 1
            self.report.republished += 1


async def reencrypt_secrets(
    redis: aioredis.Redis,
    keys: Keys,
    box: SecretBox,
    js: JetStreamContext | None = None,
    ns: Namespace | None = None,
    journal: AccountJournal | None = None,
) -> ReencryptReport:
    """Run the re-encryption (see the module's docstring); idempotent."""
    return await Reencryption(redis, keys, box, js, ns, journal).run()
