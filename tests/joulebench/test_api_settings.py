"""The settings a call or a command line makes, without running them: plan settings on the embedded default
laid over the built-in plan, None as "not given", the run folder's name checked, build warnings sent to
the caller's console, and a run cancelled before its worker started never running."""

from __future__ import annotations

import io
import json
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from joulebench_testkit import run_main
from rich.console import Console

import joulebench
from harness.cli.plan_flags import PlanOptions
from harness.cli.run_command import plan_source
from harness.runner import RunOptions
from harness.session.embedded_stack import DEFAULT_PLAN
from harness.session.measured_run import PlanSource
from joulebench.api_settings import run_settings
from joulebench.worker_thread import work
from traffic.spec import PlanSpec

BUILT_IN = PlanSpec.parse(DEFAULT_PLAN)


def _from_flags(embedded: bool, **values: Any) -> PlanSpec:
    spec = plan_source(None, PlanOptions(values=values), embedded=embedded).spec
    assert spec is not None
    return spec()


def test_plan_flags_on_the_embedded_default_go_over_the_built_in_plan() -> None:
    tokens = _from_flags(True, max_tokens="8")
    assert tokens.model_dump() == {**BUILT_IN.model_dump(), "max_tokens": 8}
    prompts = _from_flags(True, prompts="ultrachat", offline=True)
    assert prompts.schedules == BUILT_IN.schedules and prompts.n == BUILT_IN.n
    assert prompts.rate == BUILT_IN.rate and prompts.prompts == "ultrachat"
    # Given schedules replace the built-in ones, and the built-in rate (their load matching) with them.
    given = _from_flags(True, schedules=["poisson:rate=8"])
    assert given.schedules == ["poisson:rate=8"] and given.rate is None and given.n == BUILT_IN.n
    rated = _from_flags(True, schedules=["poisson:rate=8"], rate="2")
    assert rated.rate == 2
    # A duration without n sets the arms' length in place of the built-in n.
    timed = _from_flags(True, duration="5")
    assert timed.duration == 5 and timed.n is None


def test_with_a_target_the_flags_are_the_whole_plan() -> None:
    spec = _from_flags(False, schedules=["poisson:rate=8"], n="10")
    assert spec.model_dump() == PlanSpec.parse({"schedules": ["poisson:rate=8"], "n": 10}).model_dump()
    with pytest.raises(joulebench.InputError, match=r"^--n: arm 'fixed' .*give n"):
        _from_flags(False, max_tokens="8")


def test_python_plan_settings_go_over_the_built_in_plan_too() -> None:
    spec = run_settings(None, None, {"max_tokens": 8}).plan.spec
    assert spec is not None and spec().model_dump() == {**BUILT_IN.model_dump(), "max_tokens": 8}
    # A plan given (a mapping of its fields) is the whole plan, as a plan YAML is.
    mapping = run_settings(None, {"schedules": ["poisson:rate=8"], "n": 10}, {}).plan.spec
    assert mapping is not None and mapping().rate is None and mapping().max_tokens is None


def test_none_is_not_given() -> None:
    settings = run_settings(None, None, {"timeout": None, "idle": None, "strict": None, "n": None})
    assert settings.options == RunOptions()
    assert settings.measure.idle_s is None and settings.measure.strict is False
    assert settings.plan == PlanSource()  # the built-in plan, as with no plan setting at all


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "..", "/tmp/x"])
def test_a_run_folder_name_is_one_folder(tmp_path: Path, name: str) -> None:
    # The missing plan would be refused too: the name is checked first, before anything else.
    with pytest.raises(joulebench.InputError, match=r"^name: expected one folder name"):
        joulebench.run(out=tmp_path / "runs", plan=tmp_path / "missing.parquet", name=name)
    assert list(tmp_path.iterdir()) == []


def test_build_warnings_go_to_the_given_console(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A trace arm whose lengths become prompt_tokens warns; a target where nothing listens is refused
    # after the plan is built, before a run folder is made.
    prompts, trace = tmp_path / "prompts.jsonl", tmp_path / "trace.csv"
    prompts.write_text("".join(json.dumps({"prompt": f"prompt {i}"}) + "\n" for i in range(5)))
    trace.write_text("time,input_tokens,output_tokens\n" + "".join(f"{i},{5 + i},{3}\n" for i in range(4)))
    shown = io.StringIO()
    with pytest.raises(joulebench.InputError, match=r"127\.0\.0\.1:9"):
        joulebench.run(
            "http://127.0.0.1:9", out=tmp_path / "runs", console=Console(file=shown), prompts=str(prompts),
            schedules=[f"trace:path={trace}"], replace=True,
        )  # fmt: skip
    assert "warning: prompt_tokens are trace arm" in shown.getvalue()
    assert "warning" not in capsys.readouterr().err


def test_a_task_cancelled_before_it_started_runs_nothing() -> None:
    called: list[int] = []
    future: Future[int] = Future()
    future.cancel()
    work(future, lambda: called.append(1) or 1)  # on the worker thread; raises nothing there
    assert called == [] and future.cancelled()


def test_a_rate_sweep_on_the_embedded_default_sweeps_the_built_in_arms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.experiment.start as start

    seen: dict[str, Any] = {}
    monkeypatch.setattr(start, "run_experiment_data", lambda data, out, console: seen.update(data) or 0)
    assert run_main(["run", "--rate", "2,4", "--max-tokens", "8", "--out", str(tmp_path)]) == 0
    assert seen["target"] == "embedded" and seen["arms"] == BUILT_IN.schedules and seen["rates"] == [2, 4]
    assert seen["plan"]["n"] == BUILT_IN.n and seen["plan"]["max_tokens"] == 8
