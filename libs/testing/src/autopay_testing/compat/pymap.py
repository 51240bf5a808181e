"""pymap internals the local IMAP server relies on (pymap 0.36).

pymap's IDLE only wakes on a change made after IDLE began: mail appended between the client's
last command and its IDLE stayed unannounced until DONE. Gmail and dovecot report such mail
when IDLE starts, so the local server must too. `announce_pending_mail_on_idle` makes
`ConnectionState.receive_updates` (what IDLE awaits) look at the selected mailbox once before
it waits. The server installs it when it starts (`autopay_testing.imap.ImapServer`); it is
idempotent.
"""

from __future__ import annotations

from typing import Any

from pymap.imap.state import ConnectionState

_wait_for_updates = ConnectionState.receive_updates


async def _report_pending_then_wait(self: Any, cmd: Any, done: Any) -> Any:
    selected = await self.session.check_mailbox(self.selected)
    self._selected, forked = selected.fork(cmd)
    untagged = list(forked)
    if untagged:
        return untagged
    return await _wait_for_updates(self, cmd, done)


def announce_pending_mail_on_idle() -> None:
    """Install the IDLE behaviour above on pymap's connection state (once)."""
    # a method replaced on pymap's class on purpose, which mypy refuses
    ConnectionState.receive_updates = _report_pending_then_wait  # type: ignore[method-assign]


def installed() -> bool:
    return ConnectionState.receive_updates is _report_pending_then_wait
