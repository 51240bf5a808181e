"""aioimaplib hands every untagged line to the protocol method `compat.aioimaplib` wraps: over
a real IMAP session, the `* N EXISTS` of a SELECT reply reaches the hook (fails loudly when an
aioimaplib upgrade renames or bypasses it)."""

from __future__ import annotations

import aioimaplib

from autopay_mail_ingest.compat.aioimaplib import on_untagged
from autopay_testing.imap import ImapServer

USER, PASSWORD = "hook@gmail.com", "abcd efgh ijkl mnop"


async def test_the_untagged_lines_of_a_select_reach_the_hook():
    async with ImapServer({USER: PASSWORD}) as server:
        await server.append(USER, b"Subject: one\r\n\r\nbody\r\n")
        client = aioimaplib.IMAP4(server.host, server.plain_port, timeout=10)
        seen: list[bytes] = []
        on_untagged(client, seen.append)
        await client.wait_hello_from_server()
        await client.login(USER, PASSWORD)
        selected = await client.select("INBOX")
        await client.logout()
    assert selected.result == "OK"
    assert any(b"1 EXISTS" in bytes(line).upper() for line in seen), seen
