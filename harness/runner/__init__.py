"""Executes arrival plans (open and closed loop) against a target and logs every request."""

from harness.runner.execute import check_run, execute_plan
from harness.runner.options import RunOptions
from harness.runner.result import ArmRun, RunResult
from harness.runner.transport_choice import resolve_transport

__all__ = ["ArmRun", "RunOptions", "RunResult", "check_run", "execute_plan", "resolve_transport"]
