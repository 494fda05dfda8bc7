"""`joulebench merge RUN... --out DIR`: one run folder from the folders of a sharded run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import app
from harness.runfolder.shard_merge import merge_runs


@app.command("merge")
def merge(
    runs: Annotated[
        list[Path], typer.Argument(help="The shards' run folders (from `joulebench run --shard I/N`).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the merged run folder (it gets <out>/<run_id>/).")
    ] = Path("runs"),
) -> None:
    """Merge the run folders of shards 0..N-1 of one plan into one run folder.

    The result has exactly one row per planned request. Times are put on shard 0's clock: directly
    when a shard ran on the same kernel (same boot_id), through epoch time otherwise (as accurate as
    the hosts' NTP). Warm-up rows are renumbered -(j*N + shard) - 1.
    """
    folder = merge_runs(list(runs), out)
    typer.echo(str(folder.path))
