"""`joulebench compare RUN...`: arms and runs side by side, with bootstrap CIs on the differences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from foundation.errors import InputError
from harness.cli.app import app
from harness.energy import BootstrapSpec
from harness.energy.stats import MAX_RESAMPLES, MAX_SEED, MIN_RESAMPLES
from harness.report import compare as compare_entries
from harness.report import load_entries, render_comparison


@app.command("compare")
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (one run compares its arms).")],
    baseline: Annotated[
        str | None,
        typer.Option(
            metavar="ARM|RUN_ID:ARM",
            help="The entry the others are compared with (default: the first arm of the first run).",
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", metavar="FILE", help="Also write the comparison as JSON.")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed of the bootstrap resampling.")] = 0,
    resamples: Annotated[
        int, typer.Option(min=MIN_RESAMPLES, max=MAX_RESAMPLES, help="Bootstrap resamples per CI.")
    ] = 1000,
) -> None:
    """Compare mean energy per successful request of every arm of the given runs against a baseline.

    Reads each run's summary.json and energy.parquet (from `joulebench run` or `joulebench report`);
    a run without them is joined on the fly. For each arm: mean attributed J per request with its
    bootstrap 95% CI, the difference to the baseline with a bootstrap 95% CI (bold when it excludes
    zero) and the relative difference, and the all-in J per request (window energy / successes).
    """
    entries, notes = load_entries(runs)
    result = compare_entries(entries, baseline, BootstrapSpec(resamples=resamples, seed=seed))
    render_comparison(result, notes)
    if json_out is not None:
        try:
            json_out.write_text(json.dumps(result | {"notes": notes}, indent=2) + "\n")
        except OSError as exc:
            raise InputError(f"--json {json_out}: cannot write ({exc.strerror or exc})") from None
        typer.echo(str(json_out))
