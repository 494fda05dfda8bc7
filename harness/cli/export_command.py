"""`joulebench export RUN`: a run's per-request and per-arm tables (or an experiment's cells) as CSV or
Parquet, for spreadsheets, notebooks and other tools (docs/run.md, "Into other tools")."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer

from foundation.atomic_write import atomic_path
from foundation.errors import InputError
from foundation.flag_fields import check_choice
from harness.cli.app import app
from harness.cli.export_tables import arm_table, request_table, run_or_experiment
from harness.runfolder import RunFolder
from harness.runfolder.experiment_files import ExperimentFolder
from harness.runfolder.folder_kind import run_id

Format = Literal["csv", "parquet"]


@app.command("export")
def export(
    run: Annotated[Path, typer.Argument(help="A run folder, or an experiment folder (its cells table).")],
    format: Annotated[str, typer.Option("--format", metavar="csv|parquet", help="File format.")] = "csv",
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write the tables in (made if missing).")
    ] = Path("."),
) -> None:
    """Write a run's tables: <run_id>-requests (one row per request, its energy joined) and
    <run_id>-arms (one row per arm: requests, all-in, attributed, idle and above-idle J/request with
    95% CIs, latency percentiles, hold, goodput, flags). An experiment folder: <experiment_id>-cells.

    A run that read power but has no summary.json yet is refused: `joulebench report` it first. Every
    table is read first and the files are written together: on bad input nothing is written.
    """
    check_choice("--format", format, Format)
    RunFolder.check_out(out)
    if run_or_experiment(run) == "experiment":
        experiment = ExperimentFolder.open(run)
        if not experiment.has_cells():
            raise InputError(f"{run}: no {ExperimentFolder.CELLS} yet (no cell has run)")
        tables = {f"{experiment.experiment_id}-cells": experiment.read_cells()}
    else:
        folder = RunFolder.open(run)
        name = run_id(folder, folder.manifest())  # the run's, also through a link (runs/latest)
        tables = {f"{name}-requests": request_table(folder), f"{name}-arms": arm_table(folder, name)}
    for path in _write(tables, out, format):
        typer.echo(str(path))


def _write(tables: dict[str, pd.DataFrame], out: Path, format: str) -> list[Path]:
    """All files or none: each is written beside its place, and renamed into it once all are written."""
    paths = [out / f"{name}.{format}" for name in tables]
    with ExitStack() as stack:
        for path, frame in zip(paths, tables.values(), strict=True):
            tmp = stack.enter_context(atomic_path(path))
            if format == "csv":
                frame.to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False)
    return paths
