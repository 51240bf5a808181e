"""Invite codes: what a merchant types into the merchant bot to sign up.

An operator issues a code (`autopay admin invite create`) good for `uses` sign-ups until it
expires; the gateway's admin API redeems it when the bot creates the merchant. One hash per code
(`Keys.invite(code)`): `uses`, `remaining`, `expires_at`, `created_at`. Redeeming is one Lua script
on that key (`invite_redeem.lua`), so two sign-ups racing for the last use cannot both win. Redis
drops the record `KEEP_AFTER_EXPIRY` after the code expired.

Codes are `CODE_LENGTH` characters drawn with `secrets` from an alphabet without look-alikes
(no 0/O, 1/l/I): short enough to type, about 58 bits, URL-safe.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from autopay_store import scripts
from autopay_store.keys import Keys

ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")
CODE_LENGTH = 10
MAX_CODE_LENGTH = 64
"""Anything longer (or with characters outside `[A-Za-z0-9_-]`) is no code: never looked up."""
KEEP_AFTER_EXPIRY = timedelta(days=30)

_URL_SAFE = frozenset(string.ascii_letters + string.digits + "-_")


@dataclass(frozen=True)
class Invite:
    code: str
    uses: int
    expires_at: datetime
    remaining: int


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def well_formed(code: object) -> bool:
    """Whether `code` could be a code at all (a URL-safe string of a sane length)."""
    return (
        isinstance(code, str)
        and 1 <= len(code) <= MAX_CODE_LENGTH
        and all(c in _URL_SAFE for c in code)
    )


class Invites:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._issue = scripts.register(redis, "invite_issue")
        self._redeem = scripts.register(redis, "invite_redeem")
        self._release = scripts.register(redis, "invite_release")

    async def issue(self, uses: int = 1, days: float = 7, *, now: datetime) -> Invite:
        """A new code, good for `uses` redemptions during `days` from `now`."""
        if uses < 1 or days <= 0:
            raise ValueError("an invite needs at least one use and a positive number of days")
        expires_at = now + timedelta(days=days)
        drop_at = int((expires_at + KEEP_AFTER_EXPIRY).timestamp()) + 1
        while True:
            code = new_code()
            stored = await self._issue(
                keys=[self.keys.invite(code)],
                args=[uses, expires_at.timestamp(), now.timestamp(), drop_at],
            )
            if stored:
                return Invite(code, uses, expires_at, uses)

    async def redeem(self, code: str, now: datetime) -> bool:
        """Take one use of `code`: False when it is unknown, expired or used up (nothing
        changes then). Atomic: of racing redemptions of the last use, exactly one wins."""
        return await self.redeem_verdict(code, now) == "ok"

    async def redeem_verdict(self, code: str, now: datetime) -> str:
        """`redeem`, saying why: `ok`, `unknown`, `expired` or `used`."""
        if not well_formed(code):
            return "unknown"
        return await self._redeem(keys=[self.keys.invite(code)], args=[now.timestamp()])

    async def release(self, code: str) -> bool:
        """Give back a use taken by `redeem` when what it was taken for failed."""
        if not well_formed(code):
            return False
        return bool(await self._release(keys=[self.keys.invite(code)]))

    async def get(self, code: str) -> Invite | None:
        if not well_formed(code):
            return None
        data = await self.redis.hgetall(self.keys.invite(code))
        if not data or "expires_at" not in data:
            return None
        return Invite(
            code=code,
            uses=int(data["uses"]),
            expires_at=datetime.fromtimestamp(float(data["expires_at"]), tz=UTC),
            remaining=int(data["remaining"]),
        )
