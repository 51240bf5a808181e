"""The NATS `authorization` block that compose and Kubernetes deploy (`auth.conf`).

It is generated from `autopay_contracts.permissions` and must match it; a real nats-server
reads it, takes the passwords from its environment, and enforces it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from autopay_contracts.permissions import ADMIN_USER, SERVICES, password_variable
from autopay_testing.servers import free_port, nats_server_binary, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
AUTH = ROOT / "deploy/kubernetes/components/nats-cluster/auth.conf"


def test_the_committed_auth_config_is_current():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "autopay_cli.main",
            "nats",
            "auth-config",
            "--check",
            "--out",
            str(AUTH),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "password" in AUTH.read_text() and "$NATS_PASSWORD_GATEWAY" in AUTH.read_text()


def test_nats_server_runs_it_with_passwords_from_its_environment(tmp_path):
    port = free_port()
    env = {**os.environ}
    for user in (ADMIN_USER, *SERVICES):
        env[password_variable(user)] = f"secret-{user}"
    shutil.copy(AUTH, tmp_path / "auth.conf")
    server = subprocess.Popen(
        [
            *(nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port)),
            *("-sd", str(tmp_path / "js"), "-c", str(tmp_path / "auth.conf")),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)

        async def probe() -> None:
            client = await nats.connect(
                f"nats://gateway:secret-gateway@127.0.0.1:{port}", allow_reconnect=False
            )
            await client.close()
            with pytest.raises(Exception):  # noqa: B017 - refused: wrong password
                await nats.connect(
                    f"nats://gateway:secret-matcher@127.0.0.1:{port}",
                    allow_reconnect=False,
                    connect_timeout=2,
                )

        asyncio.run(probe())
    finally:
        server.terminate()
        server.wait(10)
