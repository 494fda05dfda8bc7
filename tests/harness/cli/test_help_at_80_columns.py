"""`joulebench run --help` at an 80-column terminal: every flag's names whole, help that wraps instead of
ending in "…", and switches shown as --x/--no-x without a type."""

from __future__ import annotations

import pytest
import typer
from terminal_80 import in_terminal

from harness.cli import _load_commands
from harness.cli.app import app

_load_commands(["run"])
RUN = typer.main.get_command(app).commands["run"]


@pytest.fixture(scope="module")
def run_help() -> str:
    status, text = in_terminal("run", "--help")
    assert status == 0, text
    return text


def test_every_flag_name_is_whole(run_help: str) -> None:
    names = {name for option in RUN.params for name in (*option.opts, *option.secondary_opts)}
    assert len(names) > 50  # the run command's many flags, each named in full at 80 columns
    words = set(run_help.replace("│", " ").split())
    assert sorted(names - words) == []
    assert "…" not in run_help


def test_switches_show_both_names_and_no_type(run_help: str) -> None:
    switches = [option for option in RUN.params if option.is_flag]
    assert any(option.secondary_opts for option in switches)  # --stream/--no-stream and the like
    for option in switches:
        row = next(line for line in run_help.splitlines() if line.startswith(f"│ {option.opts[0]} "))
        assert all(name in row for name in option.secondary_opts), row
    assert "<bool>" not in run_help
