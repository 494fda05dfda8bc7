"""`joulebench run` as a pipeline: plan -> [stages' before] -> execute -> [stages' after].

The runner owns only the execute step. Energy measurement plugs in as stages: e.g. one whose
`before` captures idle power and whose `after` fetches the power series, joins it to the request
log and writes the report. Stages run in list order before, and in the same order after; `after`
runs whenever the execution returned (also after a graceful stop or time limit, with what was
measured), never when it raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from traffic.plan import Plan

from ..backends import Target
from ..runfolder import RunFolder
from .execute import execute_plan
from .options import RunOptions
from .result import RunResult


@dataclass
class RunContext:
    plan: Plan
    target: Target
    options: RunOptions
    folder: RunFolder
    api_key: str | None = field(default=None, repr=False)


class Stage(Protocol):
    name: str

    def before(self, ctx: RunContext) -> None: ...

    def after(self, ctx: RunContext, result: RunResult) -> None: ...


def run_pipeline(ctx: RunContext, stages: Sequence[Stage] = ()) -> RunResult:
    for stage in stages:
        stage.before(ctx)
    result = execute_plan(ctx.plan, ctx.target, ctx.folder, ctx.options, api_key=ctx.api_key)
    for stage in stages:
        stage.after(ctx, result)
    return result
