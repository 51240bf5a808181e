"""aioimaplib internals mail-ingest relies on (aioimaplib 2.x).

An untagged `* N EXISTS` that the server sends together with another command's reply (not
during IDLE) is consumed by aioimaplib's protocol without telling anyone: the watcher would
sleep through new mail until its next poll. Every untagged line passes through the protocol's
`_untagged_response(line)`; `on_untagged` wraps that method so the watcher sees each line
first, and the protocol goes on as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aioimaplib


def on_untagged(client: aioimaplib.IMAP4, seen: Callable[[bytes], None]) -> None:
    """Call `seen(line)` for every untagged line `client` receives, before aioimaplib does."""
    protocol = client.protocol
    untagged = protocol._untagged_response

    def spy(line: bytes) -> Any:
        seen(line)
        return untagged(line)

    protocol._untagged_response = spy
