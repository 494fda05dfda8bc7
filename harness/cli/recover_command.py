"""`joulebench recover RUN...`: rebuild requests.parquet and power.parquet of a run that was killed
(after a crash, or to check)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import app
from harness.energy.grid import window_energy
from harness.runfolder import RunFolder
from harness.runfolder.folder import PowerRecovery


@app.command("recover")
def recover(
    runs: Annotated[
        list[Path], typer.Argument(help="Run folders (each with requests.jsonl and plan.parquet).")
    ],
) -> None:
    """Rebuild requests.parquet from requests.jsonl and the plan, and power.parquet from power_samples.jsonl.

    A runner killed mid-run (SIGKILL, power loss of the process) leaves its log: requests it had sent
    without a result become `cancelled` (done at the log's last sign of life), requests it never sent
    become `not_sent`. It also leaves the sidecar's samples it polled (about once a second): power over
    the run window the log shows is rebuilt from them. Prometheus and dcgm sources are read only at the
    end of a run: for those it says which to re-read, and over which window. Reading a run folder does
    all this automatically; this command does it explicitly and reports what it found.
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
        power = folder.recover_power()
        if power is not None:
            _say_power(power)
        elif (folder.manifest().get("power") or {}).get("recovered"):
            typer.echo("  power: power.parquet was rebuilt from power_samples.jsonl when the folder was read")


def _say_power(power: PowerRecovery) -> None:
    if power.data is None:
        typer.echo(f"  power: not rebuilt: {power.why}")
    else:
        joules = [window_energy(s, power.start_ns, power.end_ns) for s in power.data.series]
        total = sum(j for j, _ in joules if not math.isnan(j))
        covered = min((seconds for _, seconds in joules), default=0.0)
        span = (power.end_ns - power.start_ns) / 1e9
        typer.echo(
            f"  power: rebuilt power.parquet from power_samples.jsonl: {len(power.data.series)} GPU(s), "
            f"{total:,.1f} J over {covered:.1f} s of the {span:.1f} s the run got through (idle before too)"
        )
    for note in power.notes:
        typer.echo(f"  note: {note}")
