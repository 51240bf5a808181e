"""Tests only: kill the gateway at a named point, as a crash (OOM kill, node loss) would.

`AUTOPAY_TEST_CRASH_POINT=<name>` makes the process SIGKILL itself when it reaches that point,
so a test can check what a crash there leaves behind. Empty (the default) does nothing; never
set it outside a test. The points:

- `cancel-after-write`: the order is cancelled in Redis, `order.cancelled` not published yet;
- `cancel-after-publish`: `order.cancelled` acknowledged, the client not answered yet;
- `create-after-write`: the order is stored in Redis, `order.created` not published yet;
- `create-after-publish`: `order.created` acknowledged, the client not answered yet.
"""

from __future__ import annotations

import os
import signal


def crash_point(configured: str, name: str) -> None:
    """SIGKILL this process if `configured` (the setting) names this point."""
    if configured and configured == name:
        os.kill(os.getpid(), signal.SIGKILL)
