"""`joulebench run`: flags -> settings -> `harness.session.measured_run.run_measured` (docs/run.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from foundation.errors import InputError
from harness.cli._typer_flags import FlagValues, model_options
from harness.cli.app import app
from harness.cli.plan_flags import EPILOG, PlanOptions, plan_options
from harness.runner import RunOptions
from harness.session.config import MeasureConfig, TargetConfig
from harness.session.measured_run import PlanSource, run_measured

_RUN = TargetConfig.FLAG_PANEL


@app.command("run", epilog=EPILOG)
@plan_options
@model_options(TargetConfig, RunOptions, MeasureConfig)  # their fields declare the other flags
def run(
    plan: PlanOptions,
    flags: FlagValues,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            metavar="URL",
            help="Base URL of the server, e.g. http://127.0.0.1:8000. Without it: the embedded default "
            "(a mock server and a simulated power sidecar, started and stopped by joulebench; a built-in "
            "three-arm plan unless --plan or plan flags are given).",
            rich_help_panel=_RUN,
        ),
    ] = None,
    plan_file: Annotated[
        Path | None,
        typer.Option(
            "--plan",
            metavar="FILE",
            help="A plan from `joulebench plan build` (instead of the plan flags).",
            rich_help_panel=_RUN,
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder for run folders (each run gets <out>/<run_id>/).",
            rich_help_panel=_RUN,
        ),
    ] = Path("runs"),
) -> None:
    """Send an arrival plan to an LLM server, log every request, measure GPU energy, report per request.

    Plan (--plan FILE or the plan flags) -> idle capture -> the plan, arm by arm -> idle capture ->
    power from the sources (--sidecar, --prometheus, --dcgm) -> energy join -> summary.json,
    energy.parquet, report.html and a table here. Without --target, everything runs on an embedded mock
    stack: `joulebench run` alone measures three arrival schedules and says which cost least per
    request. The run folder <out>/<run_id>/ also holds plan.parquet, requests.parquet,
    power.parquet, server_metrics.parquet and manifest.json. See docs/run.md.
    """
    code = run_measured(
        flags.build(TargetConfig, url=target),
        _plan_source(plan_file, plan, embedded=target is None),
        flags.build(RunOptions),
        flags.build(MeasureConfig),
        out,
    )
    if code:
        raise typer.Exit(code)


def _plan_source(plan_file: Path | None, flags: PlanOptions, embedded: bool) -> PlanSource:
    if plan_file is not None:
        if flags.given():
            raise InputError("--plan: give a plan file or plan flags (--prompts, --schedule, ...), not both")
        return PlanSource(file=plan_file)
    if flags.given():
        return PlanSource(spec=flags.to_spec)
    if not embedded:  # the built-in plan is for the embedded mock, not for someone's server
        raise InputError(
            "--plan: give a plan file, or build one with plan flags (e.g. --schedule ... --n 100)"
        )
    return PlanSource()
