"""`joulebench.run` and `run_async`: one measured run from Python, the way `joulebench run` makes it.

The keywords become the command's settings (api_settings.py), checked before anything is written or
started, and `harness.session.measured_run.run_measured` does the rest: the same checks, run folder,
stages and report as the command. Inside a running event loop (a Jupyter cell) the run goes to a thread
of its own (worker_thread.py). The result is the run folder, opened (run_result.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.session.measured_run import INTERRUPTED_EXIT, STRICT_EXIT, run_measured
from joulebench.api_settings import PlanInput, check_name, run_settings
from joulebench.run_result import RunResult, read_run
from joulebench.worker_thread import call_blocking, call_in_thread


class StrictFailure(Exception):
    """`strict=True` and a figure with an error flag: what makes `joulebench run --strict` exit 1. The
    run folder is complete; `.result` holds it."""

    def __init__(self, result: RunResult) -> None:
        if result.summary is not None:
            codes = {f["code"] for f in result.flags if f.get("severity") == "error"}
        else:  # a run without power: its arms' flags (a bound given as max_lateness_ms is not among them)
            codes = {
                c for text in result.arms["flags"] for c in str(text).split(",") if c not in ("", "no_power")
            }
        which = ", ".join(sorted(codes)) or "see the run's output"
        super().__init__(f"{result.path}: an error flag under strict ({which})")
        self.result = result


def run(
    target: str | None = None,
    plan: PlanInput = None,
    *,
    out: str | os.PathLike[str] = "runs",
    name: str | None = None,
    console: Console | None = None,
    **settings: Any,
) -> RunResult:
    """Run and measure one plan, as `joulebench run` does, and return the run folder opened.

    `target`: the server's base URL; None: the embedded default (a mock server and a simulated power
    sidecar, started and stopped here). `plan`: a plan file, a plan YAML, a `PlanSpec` or a mapping of
    its fields, or None (the plan settings below; on the embedded default laid over the built-in plan).
    `settings`: plan settings by a plan YAML's keys (`schedules=[...]`, `n=`, `rate=`, `max_tokens=`,
    ...) and `joulebench run`'s flags with `_` for `-` (`idle=`, `strict=`, `sidecar=`, `warmup=`,
    `time_limit=`, ...), checked as the command checks them: a bad value raises InputError with the
    command's one line, and nothing is written; a setting given as None counts as not given. `out`: the
    folder of run folders; `name`: the run folder's name, one folder name (default: time and plan hash;
    a named run does not move `<out>/latest`); `console`: where the output goes, build warnings too (a
    rich Console; default: the terminal or the notebook).

    Blocks until the run ends, also inside a running event loop (on a worker thread). Raises
    StrictFailure with `strict=True` when a figure has an error flag, KeyboardInterrupt when the run was
    interrupted (its folder is complete; `open_run` it).
    """
    return call_blocking(_measure(target, plan, Path(out), name, console, settings))


async def run_async(
    target: str | None = None,
    plan: PlanInput = None,
    *,
    out: str | os.PathLike[str] = "runs",
    name: str | None = None,
    console: Console | None = None,
    **settings: Any,
) -> RunResult:
    """`run`, awaited: the run goes on a worker thread while the caller's event loop carries on."""
    return await call_in_thread(_measure(target, plan, Path(out), name, console, settings))


def _measure(
    target: str | None,
    plan: PlanInput,
    out: Path,
    name: str | None,
    console: Console | None,
    keywords: dict[str, Any],
) -> Callable[[], RunResult]:
    """The run, ready to go. Its name and run settings are checked here, in the caller's thread; the
    plan settings when the plan is built, first thing in the run (on its thread, under `run_async`), still
    before anything is started or written."""
    check_name(name)
    settings = run_settings(target, plan, keywords)

    def measure() -> RunResult:
        made: list[Path] = []
        status = run_measured(
            settings.target, settings.plan, settings.options, settings.measure, out, name, console,
            on_folder=made.append, argv=settings.argv,
        )  # fmt: skip
        if status == INTERRUPTED_EXIT:
            raise KeyboardInterrupt(
                f"joulebench: interrupted: {made[0]}" if made else "joulebench: interrupted"
            )
        result = read_run(made[0], status)
        if status == STRICT_EXIT:
            raise StrictFailure(result)
        return result

    return measure
