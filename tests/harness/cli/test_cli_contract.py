"""What every `joulebench` command owes its users: --help documents every flag and argument, and a
usage error is one `joulebench: error:` line with exit status 2 (never a traceback)."""

from __future__ import annotations

import pytest
import typer
from joulebench_testkit import ERROR_PREFIX, one_line_error, run_main

from harness.cli import _load_commands
from harness.cli.app import app


def _commands() -> list[tuple[list[str], object]]:
    _load_commands([])  # every command module, not only the one a command line names
    out = []

    # Duck-typed: typer vendors its own click, whose classes are not the `click` package's.
    def walk(command, path: list[str]) -> None:
        out.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return out


COMMANDS = _commands()
LEAVES = [(path, c) for path, c in COMMANDS if not hasattr(c, "commands")]
GROUPS = [(path, c) for path, c in COMMANDS if hasattr(c, "commands")]
# `serve vllm|tgi` pass the flags they do not know to the server they start.
STRICT = [(path, c) for path, c in LEAVES if not c.context_settings.get("ignore_unknown_options")]


def test_there_are_commands_to_check():
    names = {" ".join(path) for path, _ in LEAVES}
    assert {"plan build", "plan describe", "mock-server", "sidecar", "serve vllm", "merge"} <= names


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_help_documents_every_flag(path, command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # narrower, rich shortens long flag names with an ellipsis
    assert (command.help or "").strip(), "the command has no description"
    assert run_main([*path, "--help"]) == 0
    shown = capsys.readouterr().out
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        assert (getattr(param, "help", None) or "").strip(), f"{param.name}: no help text"
        names = param.opts if param.param_type_name == "option" else [param.name]
        assert any(name in shown for name in names), f"{names} missing from --help"


@pytest.mark.parametrize(("path", "group"), GROUPS, ids=[" ".join(p) or "joulebench" for p, _ in GROUPS])
def test_a_group_without_a_command_is_a_one_line_error(path, group, capsys):
    status = run_main(path)
    captured = capsys.readouterr()
    message = one_line_error(captured.err, status)
    assert message == "no command given (the help above lists them)"
    assert all(name in captured.out for name in group.commands)  # the help, on stdout


@pytest.mark.parametrize(("path", "_"), STRICT, ids=[" ".join(p) for p, _ in STRICT])
def test_an_unknown_flag_is_a_one_line_error(path, _, capsys):
    status = run_main([*path, "--no-such-flag"])
    message = one_line_error(capsys.readouterr().err, status)
    assert "--no-such-flag" in message and not message.startswith(ERROR_PREFIX)
