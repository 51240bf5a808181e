"""The HTTP adapter against real local sockets: what one attempt reads, follows and keeps."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import AsyncIterator, Callable

from autopay_notifier.adapters.webhook_client import WebhookSender
from autopay_notifier.ssrf import GuardPolicy

from .receiver import BlackHole

DEV = GuardPolicy(allow_loopback=True)
PROD = GuardPolicy()

Reply = Callable[[int], bytes]


@contextlib.asynccontextmanager
async def scripted(reply: Reply, stall: bool = False) -> AsyncIterator[dict]:
    """An HTTP/1.1 server answering the n-th request (0-based) with `reply(n)`; with `stall`
    the connection then stays open and silent."""
    state: dict = {"requests": [], "connections": 0}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state["connections"] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                state["requests"].append(head.decode("latin-1"))
                writer.write(reply(len(state["requests"]) - 1))
                await writer.drain()
                if stall:
                    await asyncio.sleep(3600)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    state["url"] = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    try:
        yield state
    finally:
        server.close()


@contextlib.asynccontextmanager
async def sender(policy: GuardPolicy = DEV, **kw) -> AsyncIterator[WebhookSender]:
    s = WebhookSender(policy, **kw)
    try:
        yield s
    finally:
        await s.aclose()


def ok(_: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_keep_alive_reuses_one_connection_per_endpoint():
    async with scripted(ok) as server, sender() as s:
        results = [await s.send(server["url"], b"{}", {}) for _ in range(5)]
    assert [r.status_code for r in results] == [200] * 5
    assert server["connections"] == 1 and len(server["requests"]) == 5


async def test_redirect_is_reported_not_followed():
    def redirect(_: int) -> bytes:
        return b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/x\r\nContent-Length: 0\r\n\r\n"

    async with scripted(redirect) as server, sender() as s:
        result = await s.send(server["url"], b"{}", {})
    assert result.status_code == 302 and len(server["requests"]) == 1


async def test_retry_after_is_read_from_the_response():
    def busy(_: int) -> bytes:
        return b"HTTP/1.1 503 Busy\r\nRetry-After: 120\r\nContent-Length: 0\r\n\r\n"

    async with scripted(busy) as server, sender() as s:
        result = await s.send(server["url"], b"{}", {})
    assert result.status_code == 503 and result.retry_after_s == 120


async def test_response_body_is_read_only_up_to_the_cap():
    def huge(_: int) -> bytes:  # promises 10 MB, sends 128 KiB, then goes silent
        return b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 128 * 1024

    async with scripted(huge, stall=True) as server, sender(total_timeout_s=3.0) as s:
        started = time.monotonic()
        result = await s.send(server["url"], b"{}", {})
    assert result.status_code == 200 and not result.timed_out
    assert time.monotonic() - started < 2.0  # stopped at the cap, did not wait for the rest


async def test_two_xx_then_a_stalled_body_counts_as_delivered():
    def partial(_: int) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok"

    async with scripted(partial, stall=True) as server, sender(total_timeout_s=0.5) as s:
        result = await s.send(server["url"], b"{}", {})
    assert result.status_code == 200


async def test_black_hole_times_out_at_the_total_timeout():
    async with BlackHole() as hole, sender(total_timeout_s=0.5) as s:
        started = time.monotonic()
        result = await s.send(hole.url(), b"{}", {})
    assert result.timed_out and result.status_code is None
    assert 0.4 < time.monotonic() - started < 2.0


async def test_cookies_are_not_kept_between_attempts():
    def cookie(_: int) -> bytes:
        return b"HTTP/1.1 200 OK\r\nSet-Cookie: s=1; Path=/\r\nContent-Length: 0\r\n\r\n"

    async def loopback(host: str, port: int):
        return [ipaddress.ip_address("127.0.0.1")]

    async with scripted(cookie) as server, sender(resolver=loopback) as s:
        url = server["url"].replace("127.0.0.1", "localhost")  # a jar ignores bare IPs
        await s.send(url, b"{}", {})
        await s.send(url, b"{}", {})
    assert all("cookie:" not in r.lower() for r in server["requests"])


async def test_private_ip_literal_is_refused_without_resolving_or_dialing():
    asked = []

    async def resolver(host: str, port: int):
        asked.append(host)
        return []

    async with sender(PROD, resolver=resolver) as s:
        result = await s.send("https://10.0.0.8/hook", b"{}", {})
    assert result.refused and asked == []


async def test_headers_and_body_arrive_as_given():
    async with scripted(ok) as server, sender() as s:
        await s.send(server["url"], b'{"a":1}', {"webhook-id": "msg_1", "user-agent": "UA/1"})
    head = server["requests"][0].lower()
    assert head.startswith("post /hook http/1.1")
    assert "webhook-id: msg_1" in head and head.count("user-agent:") == 1
    assert "user-agent: ua/1" in head
    assert "content-length: 7" in head


async def test_tls_uses_the_url_name_for_sni_and_verifies_the_certificate(tmp_path):
    import ssl

    from autopay_testing.imap import make_self_signed_cert

    cert = make_self_signed_cert(tmp_path)  # not signed by a public CA
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert.cert_file, cert.key_file)
    names = []
    server_tls.sni_callback = lambda _sock, name, _ctx: names.append(name)

    async def loopback(host: str, port: int):
        return [ipaddress.ip_address("127.0.0.1")]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    try:
        async with sender(DEV, resolver=loopback) as s:
            result = await s.send(f"https://localhost:{port}/hook", b"{}", {})
    finally:
        server.close()
    assert names == ["localhost"]
    assert result.status_code is None and "certificate" in (result.error or "").lower()
