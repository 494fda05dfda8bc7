"""`joulebench recover RUN...`: rebuild requests.parquet from a run's log (after a crash, or to check)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import app
from harness.runfolder import RunFolder


@app.command("recover")
def recover(
    runs: Annotated[
        list[Path], typer.Argument(help="Run folders (each with requests.jsonl and plan.parquet).")
    ],
) -> None:
    """Rebuild requests.parquet from requests.jsonl and the plan.

    A runner killed mid-run (SIGKILL, power loss of the process) leaves its log: requests it had sent
    without a result become `cancelled` (done at the log's last sign of life), requests it never sent
    become `not_sent`. Reading a run folder does this automatically; this command does it explicitly
    and reports what it found.
    """
    for path in runs:
        folder = RunFolder.open(path)
        result = folder.compact()
        measured = result.frame[~result.frame["warmup"]]
        counts = ", ".join(f"{k} {v}" for k, v in measured["status"].value_counts().items())
        state = "recovered after an unfinished run" if result.recovered else "complete"
        typer.echo(f"{folder.path}: {len(measured)} requests ({counts}); {state}")
        for issue in result.issues:
            typer.echo(f"  note: {issue}")
