"""The benchmarks' webhook endpoint: asyncio HTTP/1.1 on loopback, kept-alive connections, every
request's Standard Webhooks signature verified with its merchant's secret.

`POST /hook/<merchant>` is merchant `<merchant>`'s endpoint (`url(merchant)`); each webhook
resolves the future `expect(order_id)` returned with its `Arrival`, the first one only: a second
webhook for the same order is counted in `repeats` (delivery is at least once, so it is not an
error, but a figure worth showing).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"


@dataclass(frozen=True)
class Arrival:
    at: float
    """`time.perf_counter()` when the body was read."""
    verified: bool
    """The signature matched the merchant's secret (and the timestamp was fresh)."""
    payload: dict = field(default_factory=dict)


class WebhookReceiver:
    def __init__(self, secrets_by_merchant: dict[str, str]) -> None:
        self._webhooks = {m: Webhook(secret) for m, secret in secrets_by_merchant.items()}
        self.arrivals: dict[str, asyncio.Future[Arrival]] = {}
        self.repeats = 0
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._base = ""
        self._connections: set[asyncio.StreamWriter] = set()

    async def start(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self._base = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def close(self) -> None:
        """Stop listening and end the notifier's kept-alive connections (their handlers end
        on the closed stream rather than being cancelled with the loop)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.close()
        await asyncio.sleep(0)

    def url(self, merchant: str) -> str:
        return f"{self._base}/hook/{merchant}"

    def expect(self, order_id: str) -> asyncio.Future[Arrival]:
        return self.arrivals.setdefault(order_id, asyncio.get_running_loop().create_future())

    def _verified(self, merchant: str, headers: dict[str, str], body: bytes) -> bool:
        webhook = self._webhooks.get(merchant)
        if webhook is None:
            return False
        try:
            webhook.verify(body, headers)
        except (WebhookVerificationError, ValueError):
            return False
        return True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1] if " " in lines[0] else ""
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                arrived = time.perf_counter()
                self.requests += 1
                verified = self._verified(path.rsplit("/", 1)[-1], headers, body)
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {}
                order_id = str(payload.get("order_id")) if isinstance(payload, dict) else "None"
                future = self.expect(order_id)
                if future.done():
                    self.repeats += 1
                else:
                    future.set_result(Arrival(arrived, verified, payload))
                writer.write(_OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()
