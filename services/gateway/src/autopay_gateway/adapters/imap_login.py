"""Checking that an App Password opens the mailbox, before a card is stored."""

from __future__ import annotations

import contextlib
import ssl
from typing import Literal

import aioimaplib

LoginResult = Literal["ok", "auth_failed", "unreachable"]


class ImapLoginChecker:
    def __init__(
        self,
        host: str,
        port: int,
        tls: bool,
        timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context

    async def check(self, username: str, password: str) -> LoginResult:
        try:
            client = (
                aioimaplib.IMAP4_SSL(
                    self.host, self.port, timeout=self.timeout_s, ssl_context=self.ssl_context
                )
                if self.tls
                else aioimaplib.IMAP4(self.host, self.port, timeout=self.timeout_s)
            )
        except OSError:
            return "unreachable"
        try:
            try:
                await client.wait_hello_from_server()
            except (OSError, TimeoutError, ssl.SSLError, aioimaplib.AioImapException):
                return "unreachable"
            try:
                response = await client.login(username, password)
            except (OSError, TimeoutError, aioimaplib.AioImapException):
                return "unreachable"
            if response.result != "OK":
                return "auth_failed"
            with contextlib.suppress(Exception):
                await client.logout()
            return "ok"
        finally:
            transport = getattr(client.protocol, "transport", None)
            if transport is not None:
                transport.close()
