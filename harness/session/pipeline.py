"""`joulebench run` as a pipeline: plan -> [stages' before] -> execute -> [stages' after].

The runner owns only the execute step. Energy measurement plugs in as stages (harness/session/): one
captures idle power, one polls the power sources, one scrapes the server's metrics, one writes the
report. Stages nest like context managers: `before` runs in list order, `after` in reverse order, so
the stage listed first wraps all the others (e.g. the report, which needs everything else finished,
is listed first; the idle capture, which must sit right next to the requests, last).

`after` runs whenever the execution returned (also after a graceful stop or time limit, with what was
measured), never when it raised. `close`, where a stage has one, always runs (reverse order, also
after an error or Ctrl-C): that is where threads stop and files close.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from harness.backends import Target
from harness.clock import ClockAnchor
from harness.runfolder import RunFolder
from harness.runner.execute import execute_plan
from harness.runner.options import RunOptions
from harness.runner.result import RunResult
from traffic.plan import Plan


@dataclass
class RunContext:
    plan: Plan
    target: Target
    options: RunOptions
    folder: RunFolder
    api_key: str | None = field(default=None, repr=False)
    # The run's one clock anchor: the stages' times (idle windows, power) and the request log share it.
    anchor: ClockAnchor = field(default_factory=ClockAnchor.now)


class Stage(Protocol):
    def before(self, ctx: RunContext) -> None: ...

    def after(self, ctx: RunContext, result: RunResult) -> None: ...


def run_pipeline(ctx: RunContext, stages: Sequence[Stage] = ()) -> RunResult:
    entered: list[Stage] = []
    try:
        for stage in stages:
            entered.append(stage)
            stage.before(ctx)
        result = execute_plan(
            ctx.plan, ctx.target, ctx.folder, ctx.options, api_key=ctx.api_key, anchor=ctx.anchor
        )
        for stage in reversed(stages):
            stage.after(ctx, result)
        return result
    finally:
        for stage in reversed(entered):
            close = getattr(stage, "close", None)
            if close is not None:
                close()
