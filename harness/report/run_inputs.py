"""Read what the join needs from a run folder: requests, power, windows, method.

`manifest.json` sections read here (all optional): `arms` (list of {name, start_ns, end_ns}, written by
the runner), `idle` ({"pre": {start_ns, end_ns} | null, "post": ...}) and `energy` ({"method": ...,
"counter_period_s": ...}).
Arm target rates come from the plan header.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from foundation.errors import InputError
from harness.energy import (
    Analysis,
    AnalysisOptions,
    ArmWindow,
    IdleWindows,
    analyze,
    arm_windows_from_manifest,
    idle_windows_from_manifest,
)
from harness.power.series import PowerData
from harness.runfolder import RunFolder
from harness.runfolder.power_file import POWER_FILE, load_power


@dataclass
class RunInputs:
    path: Path
    run_id: str
    requests: pd.DataFrame
    power: PowerData
    manifest: dict
    arms: list[ArmWindow]
    idle: IdleWindows
    method: str


def load_run(path: str | os.PathLike, *, idle_mode: str | None = None) -> RunInputs:
    """Everything `analyze` needs from `path`; one-line InputError for a missing or damaged folder."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such run folder")
    folder = RunFolder.open(path)
    manifest = folder.manifest()
    plan = folder.plan()
    requests = folder.requests()
    rates = {arm.name: arm.mean_rate for arm in plan.header.arms}
    arms = [
        replace(a, target_rate=a.target_rate if a.target_rate is not None else rates.get(a.name))
        for a in arm_windows_from_manifest(manifest, origin=str(path / RunFolder.MANIFEST))
    ]
    energy = manifest.get("energy") or {}
    mode = idle_mode or energy.get("idle_mode") or "mean"
    idle = idle_windows_from_manifest(manifest, mode=mode, origin=str(path / RunFolder.MANIFEST))
    if (path / POWER_FILE).is_file():
        power = load_power(path)
    else:
        power = PowerData(
            series=[], source="none", issues=[f"{path}: no {POWER_FILE} (no power source was read)"]
        )
    return RunInputs(
        path=path,
        run_id=str(manifest.get("run_id") or path.name),
        requests=requests,
        power=power,
        manifest=manifest,
        arms=arms,
        idle=idle,
        method=str(energy.get("method") or "time"),
    )


def analyze_run(
    path: str | os.PathLike,
    *,
    method: str | None = None,
    idle_mode: str | None = None,
    options: AnalysisOptions | None = None,
) -> tuple[RunInputs, Analysis]:
    """Load a run folder and join it (the method defaults to the one the run recorded, and the counter's
    update period to the one the run's power source has: `manifest.json` `energy.counter_period_s`)."""
    run = load_run(path, idle_mode=idle_mode)
    period = (run.manifest.get("energy") or {}).get("counter_period_s")
    if period is not None:
        if not isinstance(period, (int, float)) or period < 0:
            where = run.path / RunFolder.MANIFEST
            raise InputError(f"{where}: energy.counter_period_s: expected seconds >= 0, got {period!r}")
        options = replace(options or AnalysisOptions(), counter_period_s=float(period))
    analysis = analyze(
        run.requests, run.power, arms=run.arms, idle=run.idle, method=method or run.method, options=options
    )
    return run, analysis
