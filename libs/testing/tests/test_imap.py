import asyncio
import json
import subprocess
import sys

import aioimaplib
import pytest

from autopay_testing.imap import ImapServer, append_over_imap, make_self_signed_cert
from autopay_testing.servers import free_port, wait_for_port

USER, PASSWORD = "shop.kassa@gmail.com", "abcd efgh ijkl mnop"
MAIL = (
    b"From: UZCARD <noreply@info.uzcard.uz>\r\nTo: shop.kassa@gmail.com\r\n"
    b"Subject: UZCARD INFO\r\nMessage-ID: <m1@info.uzcard.uz>\r\n\r\nhello\r\n"
)


async def _login_select(client: aioimaplib.IMAP4, password: str = PASSWORD) -> None:
    await client.wait_hello_from_server()
    assert (await client.login(USER, password)).result == "OK"
    assert (await client.select("INBOX")).result == "OK"


async def _wait_for_exists(client: aioimaplib.IMAP4, timeout: float = 5.0) -> list[bytes]:
    async with asyncio.timeout(timeout):
        while True:
            push = await client.wait_server_push(timeout)
            if any(b"EXISTS" in bytes(line) for line in push):
                return push


async def test_idle_gets_push_after_append_from_another_connection():
    async with ImapServer({USER: PASSWORD}) as server:
        watcher = server.client()
        await _login_select(watcher)
        idle = await watcher.idle_start(timeout=30)
        uid = await server.append(USER, MAIL)
        push = await _wait_for_exists(watcher)
        assert any(b"1 EXISTS" in bytes(line) for line in push)
        watcher.idle_done()
        await asyncio.wait_for(idle, 5)
        fetched = await watcher.uid("fetch", "1:*", "(UID BODY.PEEK[])")
        assert fetched.result == "OK"
        assert any(MAIL in bytes(line) for line in fetched.lines)
        assert uid is not None
        assert any(f"UID {uid}".encode() in bytes(line) for line in fetched.lines)
        await watcher.logout()


async def test_wrong_password_is_refused_and_add_user_works():
    async with ImapServer({}) as server:
        client = server.client()
        await client.wait_hello_from_server()
        assert (await client.login(USER, PASSWORD)).result == "NO"
        await server.add_user(USER, PASSWORD)
        assert (await client.login(USER, PASSWORD)).result == "OK"


async def test_disconnect_all_drops_clients_and_server_keeps_serving():
    async with ImapServer({USER: PASSWORD}) as server:
        lost = asyncio.Event()
        client = server.client()
        client.protocol.conn_lost_cb = lambda exc: lost.set()
        await _login_select(client)
        await client.idle_start(timeout=30)
        assert server.connection_count == 1
        assert await server.disconnect_all() == 1
        await asyncio.wait_for(lost.wait(), 5)

        again = server.client()
        await _login_select(again)
        assert (await again.noop()).result == "OK"


async def test_implicit_tls_front(tmp_path):
    cert = make_self_signed_cert(tmp_path)
    async with ImapServer({USER: PASSWORD}, tls_cert=cert) as server:
        assert server.port != server.plain_port
        client = server.client()
        await _login_select(client)
        idle = await client.idle_start(timeout=30)
        await append_over_imap(
            server.host, server.port, USER, PASSWORD, MAIL, ssl_context=cert.client_context()
        )
        await _wait_for_exists(client)
        client.idle_done()
        await asyncio.wait_for(idle, 5)
        assert await server.disconnect_all() >= 1


async def test_untrusted_certificate_is_refused(tmp_path):
    cert = make_self_signed_cert(tmp_path / "a")
    other = make_self_signed_cert(tmp_path / "b")
    async with ImapServer({USER: PASSWORD}, tls_cert=cert) as server:
        client = aioimaplib.IMAP4_SSL(
            server.host, server.port, timeout=5, ssl_context=other.client_context()
        )
        with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
            await client.wait_hello_from_server()


USER_ARG = f"{USER}:{PASSWORD}"


async def test_process_entry_point_serves_until_sigterm():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "autopay_testing.imap", "--port", str(port), "--user", USER_ARG],
        stdout=subprocess.PIPE,
    )
    try:
        await asyncio.to_thread(wait_for_port, port)
        ready = json.loads(await asyncio.to_thread(proc.stdout.readline))
        assert ready == {"host": "127.0.0.1", "port": port, "plain_port": port, "tls": False}
        uid = await append_over_imap("127.0.0.1", port, USER, PASSWORD, MAIL)
        assert uid is not None
    finally:
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 10) == 0


async def test_any_user_password_accepts_unknown_addresses_with_that_password_only():
    async with ImapServer({}, any_user_password=PASSWORD) as server:
        client = server.client()
        await client.wait_hello_from_server()
        assert (await client.login("other@gmail.com", "wrong")).result == "NO"
        assert (await client.login("other@gmail.com", PASSWORD)).result == "OK"
        assert await server.append("new@gmail.com", MAIL) is not None
