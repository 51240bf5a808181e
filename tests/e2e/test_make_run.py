"""`make run` (= `autopay dev up` in the foreground) prints a curl example that works pasted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from autopay_testing.waiting import eventually

pytestmark = pytest.mark.e2e


def _block_after(lines: list[str], heading: str) -> str:
    start = next(i for i, line in enumerate(lines) if line.startswith(heading)) + 1
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    return "\n".join(lines[start:end])


@pytest.mark.skipif(shutil.which("curl") is None, reason="the printed example uses curl")
def test_foreground_stack_prints_a_working_example(tmp_path):
    state_dir = tmp_path / "state"
    log = tmp_path / "out.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "autopay_cli.main", "dev", "up", "--state-dir", str(state_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        eventually(lambda: "Stop with Ctrl-C." in log.read_text(), 120, "the banner")
        lines = log.read_text().splitlines()
        assert any(line.strip().startswith("gateway:  http://127.0.0.1:") for line in lines)
        assert any(line.strip().startswith("API key:  ap_live_") for line in lines)

        def paste(heading: str) -> str:
            command = _block_after(lines, heading)
            command = command.replace(".venv/bin/autopay", f"{sys.executable} -m autopay_cli.main")
            done = subprocess.run(
                ["bash", "-c", command], capture_output=True, text=True, timeout=60, check=True
            )
            return done.stdout

        assert '"success":true' in paste("Create a payment")
        paste("Pay it")

        def paid() -> bool:
            return '"status":"paid"' in paste("Check it")

        eventually(paid, 30, "order 10001 paid")
        assert '"amount":' in paste("Or let the server pick")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
    time.sleep(0.2)
    assert proc.returncode == 0
    assert not (state_dir / "stack.json").exists()
