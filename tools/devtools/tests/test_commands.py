"""`autopay dev` and `autopay asyncapi` come from this package: its entry points in the group
`autopay.commands`, which the shipped CLI (`autopay_cli.main`) adds to itself."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

from typer.testing import CliRunner

from autopay_cli.main import COMMANDS_GROUP, DEVTOOLS, app

runner = CliRunner()


def test_the_dev_commands_are_this_package_s_entry_points():
    found = {e.name: e for e in entry_points(group=COMMANDS_GROUP)}
    assert set(found) == DEVTOOLS
    for entry in found.values():
        assert entry.dist is not None and entry.dist.name == "autopay-devtools", entry
        assert entry.module == "autopay_devtools.commands", entry


def test_autopay_dev_has_its_commands():
    listed = runner.invoke(app, ["dev", "--help"])
    assert listed.exit_code == 0, listed.output
    for command in ("up", "down", "send-credit", "imap-password", "sandbox-merchant", "bot"):
        assert command in listed.output, command
    bot = runner.invoke(app, ["dev", "bot", "--help"]).output
    assert "say" in bot and "press" in bot and "history" in bot


def test_the_autopay_process_finds_them(tmp_path):
    """As `make run` and the e2e tests call it: a fresh process, entry points read from the
    installed metadata."""
    result = subprocess.run(
        [sys.executable, "-m", "autopay_cli.main", "dev", "down", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "no running stack found" in result.stderr
