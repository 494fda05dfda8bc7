"""`joulebench CMD` imports only CMD's module: the sidecar and the mock server start in a fraction of a
second, without the data stack (pandas, scipy, matplotlib) the other commands need."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("pandas", "scipy", "matplotlib")


def loaded_after(argv: list[str], expression: str) -> str:
    load = f"from harness.cli import _load_commands; _load_commands({argv!r})"
    script = f"import sys; {load}; print({expression})"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("command", ["sidecar", "mock-server"])
def test_a_server_command_loads_no_data_stack(command: str) -> None:
    assert loaded_after([command], f"[m for m in {HEAVY!r} if m in sys.modules]").strip() == "[]"


def test_no_command_or_an_unknown_one_loads_them_all() -> None:
    every = "sorted(m for m in sys.modules if m.startswith('harness.cli.') and m.endswith('_command'))"
    names = loaded_after([], every)
    assert "harness.cli.run_command" in names and "harness.cli.sidecar_command" in names
    assert loaded_after(["nonsense"], every) == names
