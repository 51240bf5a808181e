"""SSRF guard for webhook destinations (pure: addresses are passed in, nothing is resolved here).

Two checks, both needed:
1. `check_url` before anything else: HTTPS only, a host, no credentials in the URL. A literal IP
   is vetted right away.
2. `vet_addresses` on what DNS returned for the host, at connect time: **every** address must be
   public, else the destination is refused (a mix of public and private fails, so round-robin
   DNS cannot smuggle an internal address in). The HTTP adapter then dials only the addresses
   vetted here, so DNS rebinding between check and connect is impossible.

`allow_loopback` (the dev stack's `allow_http_loopback`) lets `http://127.0.0.1`,
`http://localhost` and `http://[::1]` through, and only those names may then resolve to
loopback; any other name resolving to loopback is still refused.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from autopay_runtime.destinations import IPAddress, is_public

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class DestinationRefused(Exception):
    """The webhook URL or the address it resolves to is not allowed. Never retried."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int

    @property
    def lane(self) -> str:
        """Key for per-endpoint concurrency limits."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class GuardPolicy:
    allow_loopback: bool = False

    def loopback_allowed_for(self, host: str) -> bool:
        return self.allow_loopback and host.lower() in LOOPBACK_NAMES


@functools.lru_cache(maxsize=8192)
def check_url(url: str, policy: GuardPolicy) -> Target:
    """Refuse anything but an HTTPS URL (or dev loopback over HTTP); vet a literal IP host.
    Pure, so accepted URLs are cached (a refusal is an exception and is never cached)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationRefused(f"invalid webhook URL: {exc}") from exc
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise DestinationRefused("webhook URL has no host")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("webhook URL must not carry credentials")
    scheme = parts.scheme.lower()
    loopback_ok = policy.loopback_allowed_for(host)
    if scheme != "https" and not (scheme == "http" and loopback_ok):
        raise DestinationRefused(f"webhook URL must use https (got {scheme or 'no'} scheme)")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        vet_addresses(host, [literal], policy)
    return Target(scheme, host, port or (443 if scheme == "https" else 80))


def vet_addresses(host: str, addresses: list[IPAddress], policy: GuardPolicy) -> list[IPAddress]:
    """Return the addresses to dial, or refuse if any of them is not public."""
    if not addresses:
        raise DestinationRefused(f"{host} resolved to no address")
    loopback_ok = policy.loopback_allowed_for(host.rstrip(".").lower())
    for ip in addresses:
        if loopback_ok and ip.is_loopback:
            continue
        if not is_public(ip):
            raise DestinationRefused(f"{host} resolves to a non-public address ({ip})")
    return addresses
