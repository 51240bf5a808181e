"""The dev stack survives a worker's port being taken by another process: a service that keeps
dying at start on a busy port is moved to a free one (parallel test stacks pick free ports that
another stack may grab before the service binds them)."""

from __future__ import annotations

import os
import signal
import socket

import httpx
import pytest

from autopay_testing.waiting import eventually

pytestmark = pytest.mark.e2e


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_worker_whose_port_is_taken_moves_to_a_free_one(stack):
    run = stack.run_file()
    port, pid = run["matcher_port"], run["pids"]["matcher"]
    os.kill(pid, signal.SIGKILL)
    squatter = socket.socket()
    try:  # another process takes the port before the matcher is back
        eventually(lambda: _try_bind(squatter, port), 10, f"port {port} free to take")
        squatter.listen()
        moved = eventually(
            lambda: (p := stack.run_file()["matcher_port"]) != port and p, 30, "a new port"
        )
        eventually(lambda: _ready(moved), 30, f"the matcher ready on {moved}")
        assert stack.run_file()["pids"]["matcher"] != pid
    finally:
        squatter.close()


def _try_bind(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True
