"""Read what the join needs from a run folder: requests, power, windows, method.

`manifest.json` sections read here (all optional): `arms` (list of {name, start_ns, end_ns}, written by
the runner), `idle` ({"pre": {start_ns, end_ns} | null, "post": ...}) and `energy` ({"method": ...,
"counter_period_s": ..., "max_lateness_ms": ..., "slo_ttft_s": ..., "slo_e2e_s": ...}).
Arm target rates, which arms are closed loop and which are shaped (their policies) come from the plan
header; what the report states about the run (target, engine, GPUs, host, plan, command line) from
`target`, `server`, `embedded`, `power`, `host`, `plan`, `command_line` and `versions` (run_facts.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from foundation.errors import InputError
from harness.energy import (
    Analysis,
    AnalysisOptions,
    ArmPolicy,
    ArmWindow,
    IdleWindows,
    analyze,
    arm_windows_from_manifest,
    idle_windows_from_manifest,
)
from harness.energy.power_lag import SEARCH_S, parse_power_lag
from harness.power.series import PowerData
from harness.report.run_facts import RunFacts, run_facts
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
    closed_loop: frozenset[str]  # the plan's closed-loop (concurrency) arms
    policies: dict[str, ArmPolicy]  # the plan's shaped arms: their policies
    facts: RunFacts  # what was measured, for the report


def load_run(path: str | os.PathLike, *, idle_mode: str | None = None) -> RunInputs:
    """Everything `analyze` needs from `path`; one-line InputError for a missing or damaged folder."""
    path = Path(path)
    if not RunFolder.is_folder(path):
        raise InputError(f"{path}: no such run folder")
    folder = RunFolder.open(path)
    requests = folder.requests()  # first: a killed run's recovery may complete the manifest
    manifest = folder.manifest()
    plan = folder.plan()
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
        closed_loop=frozenset(arm.name for arm in plan.header.arms if arm.closed_loop),
        policies={
            arm.name: {"spec": arm.policy, "name": arm.policy_name or arm.policy}
            for arm in plan.header.arms
            if arm.policy is not None
        },
        facts=run_facts(manifest, plan.header, power),
    )


def _seconds(energy: dict, key: str, where: Path) -> float | None:
    """An SLO the run recorded (`energy.<key>`), in seconds; None when it has none."""
    value = energy.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise InputError(f"{where}: energy.{key}: expected seconds > 0, got {value!r}")
    return float(value)


def analyze_run(
    path: str | os.PathLike,
    *,
    method: str | None = None,
    idle_mode: str | None = None,
    options: AnalysisOptions | None = None,
) -> tuple[RunInputs, Analysis]:
    """Load a run folder and join it (the method defaults to the one the run recorded, the counter's
    update period to the one the run's power source has, `manifest.json` `energy.counter_period_s`, and
    the lateness bound and the SLOs to the run's `--max-lateness-ms`, `--slo-ttft` and `--slo-e2e`,
    `energy.max_lateness_ms`, `energy.slo_ttft_s` and `energy.slo_e2e_s`, and the power lag to the run's
    `--power-lag`, `energy.power_lag`, unless `options` sets them)."""
    run = load_run(path, idle_mode=idle_mode)
    energy = run.manifest.get("energy") or {}
    where = run.path / RunFolder.MANIFEST
    options = options or AnalysisOptions()
    period = energy.get("counter_period_s")
    if period is not None:
        if not isinstance(period, (int, float)) or period < 0:
            raise InputError(f"{where}: energy.counter_period_s: expected seconds >= 0, got {period!r}")
        options = replace(options, counter_period_s=float(period))
    bound = energy.get("max_lateness_ms")
    if bound is not None and options.max_lateness_ms is None:
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not 0 < bound < math.inf:
            raise InputError(f"{where}: energy.max_lateness_ms: expected milliseconds > 0, got {bound!r}")
        options = replace(options, max_lateness_ms=float(bound))
    delay = energy.get("sensor_delay_s")
    if delay is not None and options.sensor_delay_s is None:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= SEARCH_S[1]:
            raise InputError(f"{where}: energy.sensor_delay_s: expected seconds from 0 to {SEARCH_S[1]}, "
                             f"got {delay!r}")  # fmt: skip
        options = replace(options, sensor_delay_s=float(delay))
    recorded_lag = energy.get("power_lag")
    if recorded_lag is not None and options.power_lag is None:
        try:
            options = replace(options, power_lag=parse_power_lag(str(recorded_lag)))
        except InputError as exc:
            raise InputError(f"{where}: energy.power_lag: {exc}") from None
    if options.slo_ttft_s is None:
        options = replace(options, slo_ttft_s=_seconds(energy, "slo_ttft_s", where))
    if options.slo_e2e_s is None:
        options = replace(options, slo_e2e_s=_seconds(energy, "slo_e2e_s", where))
    analysis = analyze(
        run.requests,
        run.power,
        arms=run.arms,
        idle=run.idle,
        method=method or run.method,
        options=options,
        closed_loop=run.closed_loop,
        policies=run.policies,
    )
    return run, analysis
