"""Commands other distributions add to `autopay` through the entry-point group
`autopay.commands` (`autopay_cli.main.add_commands`): the dev-only autopay-devtools adds `dev`
and `asyncapi`. Without it, the shipped CLI says where they went instead of "no such command"."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

import typer
from typer.testing import CliRunner

from autopay_cli.main import COMMANDS_GROUP, DEVTOOLS, add_commands

runner = CliRunner()


def shipped_cli(entries: list[EntryPoint]) -> typer.Typer:
    cli = typer.Typer(no_args_is_help=True)

    @cli.command("parse-mail")
    def parse_mail() -> None:
        """A shipped command."""

    add_commands(cli, entries)
    return cli


def test_without_devtools_each_dev_command_says_where_it_went():
    cli = shipped_cli([])
    for args in (["dev", "up", "--state-dir", ".autopay", "--detach"], ["dev"], ["asyncapi"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert "autopay-devtools" in result.output, args
        assert "make install" in result.output, args
    listed = runner.invoke(cli, ["--help"]).output
    assert "parse-mail" in listed
    assert not [name for name in DEVTOOLS if name in listed], "placeholders are not listed"


def test_a_group_or_a_command_from_an_entry_point_is_added(monkeypatch):
    plugin = types.ModuleType("autopay_plugin_for_test")
    group = typer.Typer()

    @group.command("hello")
    def hello() -> None:
        typer.echo("hello from the group")

    def single() -> None:
        typer.echo("a single command")

    plugin.group, plugin.single = group, single
    monkeypatch.setitem(sys.modules, plugin.__name__, plugin)
    cli = shipped_cli(
        [
            EntryPoint("dev", f"{plugin.__name__}:group", COMMANDS_GROUP),
            EntryPoint("asyncapi", f"{plugin.__name__}:single", COMMANDS_GROUP),
        ]
    )
    assert runner.invoke(cli, ["dev", "hello"]).output == "hello from the group\n"
    assert runner.invoke(cli, ["asyncapi"]).output == "a single command\n"
