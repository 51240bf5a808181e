"""The local IMAP server announces, when IDLE starts, mail that arrived before it (as Gmail
does): pymap's `ConnectionState.receive_updates` is what `autopay_testing.compat.pymap`
wraps. Fails loudly when a pymap upgrade moves it, or IDLE stops awaiting it."""

from __future__ import annotations

import asyncio

from pymap.imap.state import ConnectionState

from autopay_testing.compat import pymap as compat
from autopay_testing.imap import ImapServer

USER, PASSWORD = "idle@gmail.com", "abcd efgh ijkl mnop"
MAIL = b"Subject: early\r\n\r\nbefore IDLE\r\n"


async def test_mail_appended_between_commands_is_announced_when_idle_starts():
    async with ImapServer({USER: PASSWORD}) as server:
        assert compat.installed() and hasattr(ConnectionState, "receive_updates")
        client = server.client()
        await client.wait_hello_from_server()
        await client.login(USER, PASSWORD)
        await client.select("INBOX")
        await server.append(USER, MAIL)  # after the SELECT, before the IDLE
        idle = await client.idle_start(timeout=30)
        pushed = await asyncio.wait_for(client.wait_server_push(), 5)
        client.idle_done()
        await asyncio.wait_for(idle, 5)
        await client.logout()
    assert any(b"EXISTS" in bytes(line).upper() for line in pushed), pushed
