"""Executes arrival plans (open and closed loop) against a target and logs every request."""

from .execute import check_run, execute_plan
from .options import RunOptions
from .pipeline import RunContext, Stage, run_pipeline
from .result import ArmWindow, RunResult

__all__ = [
    "ArmWindow",
    "RunContext",
    "RunOptions",
    "RunResult",
    "Stage",
    "check_run",
    "execute_plan",
    "run_pipeline",
]
