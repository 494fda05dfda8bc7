"""`joulebench report RUN`: join a run folder's requests and power again and rewrite its reports."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from foundation.flag_fields import check_choice
from harness.cli.app import app
from harness.energy import METHODS, AnalysisOptions, BootstrapSpec
from harness.energy.power_lag import parse_power_lag
from harness.energy.split import Method
from harness.energy.stats import MAX_RESAMPLES, MAX_SEED, MIN_RESAMPLES
from harness.energy.windows import IDLE_MODES, IdleMode
from harness.report import render_terminal_summary, report_run
from harness.report.terminal import wide_console
from harness.runfolder.report_files import read_summary
from harness.session.config import parse_lateness_ms, parse_slo_s

# The flags' defaults are read from the analysis' own, so the two cannot drift apart.
_DEFAULTS = AnalysisOptions()


@app.command("report")
def report(
    run: Annotated[
        Path,
        typer.Argument(
            help="Run folder (with manifest.json, plan.parquet, requests.parquet, power.parquet)."
        ),
    ],
    method: Annotated[
        str | None,
        typer.Option(
            help=f"How energy is split among requests in flight: {' or '.join(METHODS)} "
            "(default: the method the run recorded, else time). See docs/energy.md."
        ),
    ] = None,
    idle: Annotated[
        str | None,
        typer.Option(
            help=f"Idle power estimate: {', '.join(IDLE_MODES)} (of the idle windows before/after the run; "
            "default: mean)."
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(min=0, max=MAX_SEED, help="Seed of the bootstrap resampling (CIs are reproducible)."),
    ] = _DEFAULTS.bootstrap.seed,
    resamples: Annotated[
        int, typer.Option(min=MIN_RESAMPLES, max=MAX_RESAMPLES, help="Bootstrap resamples per CI.")
    ] = _DEFAULTS.bootstrap.resamples,
    min_coverage: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Flag requests with less of their lifetime under power samples."),
    ] = _DEFAULTS.min_coverage,
    min_power_coverage: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="An arm whose window power samples cover less (on any GPU) has incomplete energy: no "
            "all-in figure, no verdict, and an error flag (power_incomplete).",
        ),
    ] = _DEFAULTS.min_power_coverage,
    max_lateness_ms: Annotated[
        str | None,
        typer.Option(
            metavar="MS",
            help="Bound on each open-loop arm's p99 lateness (sent - planned); above it the arm is flagged "
            "lateness_over_bound, an error. (default: the run's --max-lateness-ms, else from each arm's "
            "planned gaps; see docs/energy.md)",
            show_default=False,
        ),
    ] = None,
    slo_ttft: Annotated[
        str | None,
        typer.Option(
            metavar="SECONDS",
            help="SLO on time to first token as users see it (from their arrival, a shaping policy's hold "
            "included): goodput is the share and rate of planned requests within it (and --slo-e2e). "
            "(default: the run's --slo-ttft, else none)",
            show_default=False,
        ),
    ] = None,
    slo_e2e: Annotated[
        str | None,
        typer.Option(
            metavar="SECONDS",
            help="SLO on end-to-end latency from the user's arrival, as for --slo-ttft. "
            "(default: the run's --slo-e2e, else none)",
            show_default=False,
        ),
    ] = None,
    power_lag: Annotated[
        str | None,
        typer.Option(
            metavar="auto|off|SECONDS",
            help="Shift the power series this much earlier before splitting it: auto estimates each GPU's "
            "delay behind the requests (applied when stable, flagged power_lag_unstable when not), off "
            "applies none. (default: the run's --power-lag, else auto; see docs/energy.md)",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the paths written.")] = False,
    strict: Annotated[
        bool, typer.Option(help="Exit with status 1 when a result has an error flag (e.g. no power data).")
    ] = False,
) -> None:
    """Rebuild summary.json, energy.parquet and report.html of a run folder, and print the summary.

    The join reads only the folder: requests.parquet (recovered from requests.jsonl if the runner died),
    power.parquet, and the arm and idle windows in manifest.json. Results with problems (no or gappy
    power data, power covering only part of an arm, too little coverage, short windows, late sends, no
    successful requests) are reported as flags in the summary, never as silent numbers.
    """
    if method is not None:
        check_choice("--method", method, Method)
    if idle is not None:
        check_choice("--idle", idle, IdleMode)
    options = AnalysisOptions(
        bootstrap=BootstrapSpec(resamples=resamples, seed=seed),
        min_coverage=min_coverage,
        min_power_coverage=min_power_coverage,
        max_lateness_ms=None
        if max_lateness_ms is None
        else parse_lateness_ms("--max-lateness-ms", max_lateness_ms),
        slo_ttft_s=None if slo_ttft is None else parse_slo_s("--slo-ttft", slo_ttft),
        slo_e2e_s=None if slo_e2e is None else parse_slo_s("--slo-e2e", slo_e2e),
        power_lag=None if power_lag is None else parse_power_lag(power_lag),
    )
    console = wide_console()
    with console.status("joining requests and power...", spinner="dots") if not quiet else nullcontext():
        analysis, paths = report_run(run, method=method, idle_mode=idle, options=options)
    if not quiet:
        render_terminal_summary(read_summary(run), console)  # exactly what summary.json says
    for path in (paths.summary, paths.energy, paths.html):
        typer.echo(str(path))
    if strict and any(f.severity == "error" for f in analysis.flags):
        raise typer.Exit(1)
