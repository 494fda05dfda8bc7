"""`joulebench check RUN --baseline RUN --max-regression 5%`: a CI gate on energy per request and latency."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from foundation.errors import InputError
from harness.cli.app import app
from harness.report.regression import check as check_figures
from harness.report.regression import parse_threshold, render
from harness.report.regression_inputs import experiment_figures, kind_of, run_figures


@app.command("check")
def check(
    run: Annotated[Path, typer.Argument(help="The run (or experiment) folder to check.")],
    baseline: Annotated[
        Path, typer.Option(metavar="RUN", help="The run (or experiment) folder it must not be worse than.")
    ],
    max_regression: Annotated[
        str, typer.Option(metavar="PCT", help="The largest allowed increase of each figure, e.g. 5%.")
    ] = "5%",
) -> None:
    """Exit 1 when all-in J/request, TTFT p50 or E2E p50 of an arm regressed beyond --max-regression.

    Arms are matched by name (and offered rate in experiments). A regression is claimed only when the
    95% interval of the difference lies wholly above the allowed increase: from the runs' bootstrap
    intervals for single runs, a Welch interval over the repeats for experiments (docs/ci.md). A single
    run's intervals are bootstraps over its own requests and leave out run-to-run variation (host load,
    drift), so single runs from two machines or times can show noise as a regression: for a gate,
    check experiments (`joulebench run --repeats N`). An arm flagged with an error (incomplete power,
    late sends, ...) in either run, a figure missing or not finite, or an unfinished experiment's arm
    with under 2 done repeats fails the check. Exit 0: no figure shown to regress (an inconclusive one
    passes; the PASS line names it); 1: one regressed, or a figure could not be trusted; 2: bad input
    (and a run without power: there is no energy to check).
    """
    try:
        threshold = parse_threshold(max_regression)
    except ValueError as exc:
        raise InputError(f"--max-regression {max_regression}: {exc}") from None
    kinds = kind_of(run, "RUN"), kind_of(baseline, "--baseline")
    if kinds[0] != kinds[1]:
        raise InputError(
            f"--baseline {baseline}: is a {kinds[1]}, RUN {run} a {kinds[0]}; compare like with like"
        )
    load = run_figures if kinds[0] == "run" else experiment_figures
    result = check_figures(load(baseline), load(run), threshold)
    typer.echo(f"joulebench check · {run} against baseline {baseline}")
    for line in render(result, threshold):
        typer.echo(line)
    if result.failed:
        raise typer.Exit(1)
