"""`run_pipeline`: stages nest around the execution like context managers, and always get to clean up."""

from __future__ import annotations

import pytest

import harness.session.pipeline as pipeline
from harness.session.pipeline import RunContext


class Recorder:
    def __init__(self, name: str, log: list[str], fail_before: bool = False) -> None:
        self.name, self.log, self.fail_before = name, log, fail_before

    def before(self, ctx) -> None:
        self.log.append(f"before {self.name}")
        if self.fail_before:
            raise RuntimeError(f"{self.name} failed")

    def after(self, ctx, result) -> None:
        self.log.append(f"after {self.name}")

    def close(self) -> None:
        self.log.append(f"close {self.name}")


class NoClose:
    name = "plain"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def before(self, ctx) -> None:
        self.log.append("before plain")

    def after(self, ctx, result) -> None:
        self.log.append("after plain")


@pytest.fixture
def ctx():
    return RunContext(plan=None, target=None, options=None, folder=None)  # type: ignore[arg-type]


def fake_execute(log: list[str], fail: bool = False):
    def execute(plan, target, folder, options, *, api_key=None, anchor=None):
        log.append(f"execute (anchor {'given' if anchor is not None else 'none'})")
        if fail:
            raise RuntimeError("execution failed")
        return "result"

    return execute


def test_after_runs_in_reverse_order_then_every_close(monkeypatch, ctx) -> None:
    log: list[str] = []
    monkeypatch.setattr(pipeline, "execute_plan", fake_execute(log))
    stages = [Recorder("report", log), NoClose(log), Recorder("idle", log)]
    assert pipeline.run_pipeline(ctx, stages) == "result"
    assert log == [
        "before report", "before plain", "before idle", "execute (anchor given)",
        "after idle", "after plain", "after report", "close idle", "close report",
    ]  # fmt: skip


def test_a_failing_before_closes_only_the_stages_entered(monkeypatch, ctx) -> None:
    log: list[str] = []
    monkeypatch.setattr(pipeline, "execute_plan", fake_execute(log))
    stages = [Recorder("a", log), Recorder("b", log, fail_before=True), Recorder("c", log)]
    with pytest.raises(RuntimeError, match="b failed"):
        pipeline.run_pipeline(ctx, stages)
    assert log == ["before a", "before b", "close b", "close a"]


def test_a_failing_execution_skips_after_but_closes(monkeypatch, ctx) -> None:
    log: list[str] = []
    monkeypatch.setattr(pipeline, "execute_plan", fake_execute(log, fail=True))
    with pytest.raises(RuntimeError, match="execution failed"):
        pipeline.run_pipeline(ctx, [Recorder("a", log)])
    assert log == ["before a", "execute (anchor given)", "close a"]
