"""Bad input to joulebench.run: the InputError `joulebench run` prints for the same flag, and nothing
written (the folder for run folders is not even made). Each is refused before any server starts."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest
from joulebench_testkit import one_line_error, run_main

import joulebench
from traffic.spec import PlanSpec

# (keywords, the same as flags); a plan setting's value is shown as given (0, not the flag's text '0').
CASES = [
    ({"idle": -1}, ["--idle", "-1"]),
    ({"timeout": "abc"}, ["--timeout", "abc"]),
    ({"warmup": 1.5}, ["--warmup", "1.5"]),
    ({"method": "watts"}, ["--method", "watts"]),
    ({"shard": "3"}, ["--shard", "3"]),
    ({"sidecar": "http://127.0.0.1:9"}, ["--sidecar", "http://127.0.0.1:9"]),
    ({"schedules": ["nope:x=1"]}, ["--schedule", "nope:x=1"]),
    ({"n": 0}, ["--n", "0"]),
    ({"plan": "missing.parquet"}, ["--plan", "missing.parquet"]),
    ({"plan": "missing.parquet", "n": 3}, ["--plan", "missing.parquet", "--n", "3"]),
    ({"target": "localhost:8000"}, ["--target", "localhost:8000"]),
]


@pytest.mark.parametrize(("keywords", "flags"), CASES, ids=[" ".join(f) for _, f in CASES])
def test_the_commands_message_and_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keywords: dict[str, Any], flags: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = run_main(["run", "--out", "cli-runs", *flags])
    expected = one_line_error(err.getvalue(), status)
    with pytest.raises(joulebench.InputError) as raised:
        joulebench.run(out="runs", **keywords)
    shown = {repr(str(v)): repr(v) for k, v in keywords.items() if k == "n"}  # a plan value as given
    for text, value in shown.items():
        expected = expected.replace(text, value)
    assert str(raised.value) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_python_only_mistakes(tmp_path: Path) -> None:
    with pytest.raises(joulebench.InputError, match=r"^--strict: expected True or False, got 'yes'$"):
        joulebench.run(out=tmp_path / "runs", strict="yes")
    with pytest.raises(TypeError, match=r"unexpected keyword 'schedule'; plan settings: .*schedules"):
        joulebench.run(out=tmp_path / "runs", schedule=["fixed:interval=1"])
    with pytest.raises(
        joulebench.InputError, match=r"^plan: give a PlanSpec or plan settings \(n\), not both$"
    ):
        joulebench.run(out=tmp_path / "runs", plan=PlanSpec(n=5), n=3)
    assert not (tmp_path / "runs").exists()
