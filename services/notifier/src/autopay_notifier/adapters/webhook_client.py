"""HTTP adapter: one shared aiohttp session whose connections can only reach vetted addresses.

The SSRF check lives in the connector's resolver (`GuardedResolver`): the host name is resolved
there, every address is vetted, and aiohttp dials only the addresses the resolver returned —
the very ones that were checked. TLS still runs against the original name (aiohttp passes the
URL's host as SNI and checks the certificate against it) and the `Host` header is untouched.
Pooled keep-alive connections are keyed by the original `host:port`, so a connection is only
ever reused for the host it was vetted for. aiohttp never hands an IP literal to a resolver, so
`send` vets the URL itself first (`check_url` refuses a non-public literal).

Redirects are never followed, the whole attempt is bounded by `total_timeout_s` (connect by
`connect_timeout_s`), at most `response_cap_bytes` of the response are read (raw: no automatic
decompression, so a compressed body cannot expand past the cap), no cookies are kept and no
proxy settings are read from the environment.

Why aiohttp and not httpx: per request httpx + httpcore cost about three times the CPU of
aiohttp's client (C HTTP parser, dict-keyed pool), and the notifier is CPU-bound on it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
import typing
from datetime import UTC, datetime

import aiohttp
import certifi
from aiohttp.abc import AbstractResolver, ResolveResult

from autopay_notifier.domain import AttemptResult, parse_retry_after
from autopay_notifier.ssrf import (
    DestinationRefused,
    GuardPolicy,
    IPAddress,
    check_url,
    vet_addresses,
)

Resolver = typing.Callable[[str, int], typing.Awaitable[list[IPAddress]]]


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        seen[ipaddress.ip_address(sockaddr[0])] = None
    return list(seen)


class GuardedResolver(AbstractResolver):
    """Resolves and vets; returns only addresses that passed the guard (or refuses)."""

    def __init__(self, policy: GuardPolicy, resolver: Resolver = resolve_host) -> None:
        self._policy = policy
        self._resolve = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = vet_addresses(host, await self._resolve(host, port), self._policy)
        return [
            ResolveResult(
                hostname=host,
                host=str(ip),
                port=port,
                family=socket.AF_INET if ip.version == 4 else socket.AF_INET6,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for ip in addresses
        ]

    async def close(self) -> None:
        return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


class WebhookSender:
    def __init__(
        self,
        policy: GuardPolicy,
        *,
        connect_timeout_s: float = 5.0,
        total_timeout_s: float = 15.0,
        response_cap_bytes: int = 64 * 1024,
        per_origin_connections: int = 8,
        resolver: Resolver = resolve_host,
    ) -> None:
        self.policy = policy
        self.total_timeout_s = total_timeout_s
        self.response_cap_bytes = response_cap_bytes
        self._timeout = aiohttp.ClientTimeout(total=total_timeout_s, connect=connect_timeout_s)
        self._per_origin = per_origin_connections
        self._resolver = GuardedResolver(policy, resolver)
        self._tls = ssl.create_default_context(cafile=certifi.where())  # slow: built once
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """Created on first use: aiohttp binds its session to the running event loop."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=self._resolver,
                ssl=self._tls,
                limit=0,  # the notifier's lanes bound the total; no global queue to starve in
                limit_per_host=self._per_origin,
                keepalive_timeout=30.0,
                ttl_dns_cache=10,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,
            )
        return self._session

    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        started = time.monotonic()

        def result(**kw: typing.Any) -> AttemptResult:
            return AttemptResult(duration_s=time.monotonic() - started, **kw)

        status: int | None = None
        try:
            check_url(url, self.policy)
            async with asyncio.timeout(self.total_timeout_s):
                async with self._client().post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as resp:
                    status = resp.status
                    read = 0
                    while read < self.response_cap_bytes:
                        chunk = await resp.content.read(self.response_cap_bytes - read)
                        if not chunk:
                            break
                        read += len(chunk)
                    retry_after = parse_retry_after(
                        resp.headers.get("retry-after"), datetime.now(UTC)
                    )
                    return result(status_code=status, retry_after_s=retry_after)
        except DestinationRefused as exc:
            return result(error=str(exc), refused=True)
        except TimeoutError:
            if status is not None and 200 <= status < 300:
                return result(status_code=status)  # answered 2xx, then stalled the body
            return result(error=f"timed out after {self.total_timeout_s:g}s", timed_out=True)
        except aiohttp.ClientError as exc:
            return result(error=_short(exc))
        except (OSError, ssl.SSLError, ValueError) as exc:
            return result(error=_short(exc))

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
