"""`joulebench merge RUN... --out DIR`: one run folder from the folders of a sharded run, with its
energy when a power source is given (harness/session/merged_power.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli._typer_flags import FlagValues, model_options
from harness.cli.app import app
from harness.session.merged_power import MergePowerConfig, merge_measured


@app.command("merge")
@model_options(MergePowerConfig)  # its fields declare the power flags (those of `joulebench run`)
def merge(
    runs: Annotated[
        list[Path], typer.Argument(help="The shards' run folders (from `joulebench run --shard I/N`).")
    ],
    flags: FlagValues,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the merged run folder (it gets <out>/<run_id>/).")
    ] = Path("runs"),
) -> None:
    """Merge the run folders of shards 0..N-1 of one plan into one run folder.

    The result has exactly one row per planned request. Times are put on shard 0's clock: directly
    when a shard ran on the same kernel (same boot_id), through epoch time otherwise (as accurate as
    the hosts' NTP). Warm-up rows are renumbered -(j*N + shard) - 1. With a power source (--prometheus,
    --sidecar, --dcgm or --power-samples) the power over the merged window is joined with the
    requests and reported as for a single run (summary.json, report.html, flags); the folder's path
    goes to stdout, everything else to stderr.
    """
    folder, code = merge_measured(list(runs), out, flags.build(MergePowerConfig))
    typer.echo(str(folder))
    if code:
        raise typer.Exit(code)
