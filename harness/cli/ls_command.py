"""`joulebench ls [DIR]`: one line per run (and experiment) folder, newest first, with its headline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import app
from harness.runfolder.listing import Entry, list_folder

_HEADER = ("folder", "label", "started (UTC)", "arms", "ok/total", "all-in J/request per arm", "error flags")


@app.command("ls")
def ls(
    folder: Annotated[
        Path, typer.Argument(help="A folder of run folders (joulebench run --out), or one run.")
    ] = Path("runs"),
) -> None:
    """List the runs and experiments in a folder, newest first: label, start, arms, successful/planned
    requests, each arm's all-in J per successful request (or why there is none: no power,
    incomplete power, not reported), error flags. An experiment is one line with its cells' counts.
    """
    entries, skipped = list_folder(folder)
    rows = [_HEADER, *(_cells(e) for e in entries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER) - 1)]
    for row in rows:
        typer.echo("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip())
    if skipped:
        typer.echo(f"({skipped} folder{'s' if skipped > 1 else ''} that {'are' if skipped > 1 else 'is'} "
                   "not a run or experiment skipped)")  # fmt: skip


def _cells(entry: Entry) -> tuple[str, ...]:
    return (
        entry.name,
        entry.label or "-",
        entry.started.strftime("%Y-%m-%d %H:%M:%S") if entry.started else "-",
        "-" if entry.arms is None else str(entry.arms),
        entry.requests,
        "experiment" if entry.kind == "experiment" else (", ".join(entry.headline) or "-"),
        ", ".join(entry.errors) or "-",
    )
