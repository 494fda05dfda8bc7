"""Energy for a sharded run: `joulebench merge RUN... --prometheus URL` (or --sidecar, --dcgm,
--power-samples) reads power over the merged window and reports it as a single run's.

Shards run without power (each shard's process sees only its slice of the load on GPUs the others
share). The power is read afterwards, from a source that keeps history: Prometheus (the natural one in
Kubernetes), the sidecar's sample ring (~15 min at 100 Hz), or a sample log. The merged folder then
goes through the run's own power stage (`PowerStage.collect`) and report stage: the same
power.parquet, summary.json, report.html, flags and terminal summary as a single run.

Clocks: the merged requests are on shard 0's clock. A power source on shard 0's kernel maps exactly;
otherwise its offset is probed from here, which is only shard 0's clock when this process runs on
shard 0's kernel. Elsewhere nothing is probed: the source maps through epoch time (flagged
clock_unmeasured), and a sidecar read over HTTP, which would probe, is refused. Shards from other hosts
were mapped through epoch time too; both go into the power data's issues, and `--strict` fails on them.

Idle: there is no capture around a merge. `--idle-before S` takes [start - S, start] as the idle
window, measured only where the source holds it (the join flags an unmeasured window); without it the
report estimates idle power from the run's empty stretches, or takes 0 W, and says so in its flags.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from rich.console import Console

from foundation.errors import InputError
from foundation.flag_fields import check_choice, flag
from harness.backends.detect import APIS, Target
from harness.backends.openai import OpenAIChat
from harness.clock import ClockAnchor
from harness.energy import Window
from harness.energy.split import Method
from harness.power.sources import SidecarSource
from harness.runfolder import RunFolder
from harness.runfolder.power_file import load_power, save_power
from harness.runfolder.shard_merge import MergedShards, merge_shards
from harness.runner import RunOptions, RunResult
from harness.runner.result import ArmRun
from harness.session.config import MeasureConfig, PowerConfig
from harness.session.idle_capture import idle_record
from harness.session.pipeline import RunContext
from harness.session.power_stage import PowerStage
from harness.session.provenance import command_line
from harness.session.report_stage import ReportStage
from harness.session.stage_state import MeasureState

MAX_IDLE_BEFORE_S = 86_400.0
_SOURCE_FLAGS = "--prometheus, --sidecar, --dcgm or --power-samples"


def _run_flag(name: str) -> Mapping[str, Any]:
    """The metadata of `joulebench run`'s flag on that MeasureConfig field (its text and parser), so
    that a merge's flag of the same name is declared once."""
    (found,) = [f for f in fields(MeasureConfig) if f.name == name]
    return found.metadata


@dataclass(frozen=True)
class MergePowerConfig:
    FLAG_PANEL: ClassVar[str] = "Power and energy"

    power: PowerConfig = field(default_factory=PowerConfig)
    samples: Path | None = flag(
        None,
        "--power-samples FILE",
        "A sidecar sample log as the power source: a run's power_samples.jsonl or the file of "
        "`joulebench sidecar --log FILE` (instead of --sidecar URL).",
    )
    idle_before_s: float | None = flag(
        None,
        "--idle-before SECONDS",
        "Idle power from the SECONDS before the first arm's start, read from the power source's "
        "history. (default: no idle window; the report estimates idle power from the run's empty "
        "stretches, or takes 0 W, and flags it)",
    )
    method: Method = field(default=MeasureConfig.method, metadata=_run_flag("method"))
    strict: bool = flag(
        False,
        "--strict/--no-strict",
        "Exit with status 1 when the merged result has an error flag, or when requests and power "
        "are related only through epoch time (a shard from another host than shard 0, or a power "
        "source whose clock offset was not measured).",
    )
    max_lateness_ms: float | None = field(
        default=MeasureConfig.max_lateness_ms, metadata=_run_flag("max_lateness_ms")
    )
    slo_ttft_s: float | None = field(default=MeasureConfig.slo_ttft_s, metadata=_run_flag("slo_ttft_s"))
    slo_e2e_s: float | None = field(default=MeasureConfig.slo_e2e_s, metadata=_run_flag("slo_e2e_s"))

    @property
    def power_config(self) -> PowerConfig:
        """The power stage's configuration: a sample log is read as the sidecar is."""
        return self.power if self.samples is None else replace(self.power, sidecar=str(self.samples))

    def validate(self) -> MergePowerConfig:
        self.power.validate()
        if self.samples is not None:
            if self.power.sidecar:
                raise InputError("--power-samples: give --sidecar URL or --power-samples FILE, not both")
            if not self.samples.is_file():
                raise InputError(f"--power-samples {self.samples}: file not found")
        idle = self.idle_before_s
        if idle is not None and not 0 < idle <= MAX_IDLE_BEFORE_S:
            raise InputError(
                f"--idle-before: expected seconds above 0, at most {MAX_IDLE_BEFORE_S:g}, got {idle}"
            )
        check_choice("--method", self.method, Method)
        if not self.power_config.sources:
            given = [*_given_flags(self.power, PowerConfig()), *_given_flags(self, MergePowerConfig())]
            if given:
                raise InputError(f"{given[0]}: needs a power source ({_SOURCE_FLAGS})")
        return self


def _given_flags(config: Any, default: Any) -> list[str]:
    """The flags of `config`'s own fields whose value is not the default's, in declaration order."""
    return [
        f.metadata["flag"].split()[0].split("/")[0]
        for f in fields(config)
        if f.metadata.get("flag") and getattr(config, f.name) != getattr(default, f.name)
    ]


def merge_measured(
    paths: Sequence[str | os.PathLike[str]],
    out: Path,
    config: MergePowerConfig,
    console: Console | None = None,
    argv: Sequence[str] | None = None,
) -> tuple[Path, int]:
    """Merge the shards and, given a power source, join them with its power and report. Returns the
    merged folder and the exit status (1: --strict and a problem). Bad input: InputError, nothing written.
    `argv`: the merge's command line for the manifest (default: sys.argv)."""
    config.validate()
    RunFolder.check_out(out)
    shards = merge_shards(paths)
    # `command_line` stays shard 0's (what ran the load); this says how the folder, and its power, came.
    shards.manifest["merge"] = {"command_line": command_line(sys.argv if argv is None else argv)}
    if not config.power_config.sources:
        return shards.write(out).path, 0
    err = console if console is not None else Console(stderr=True)
    run = shards.manifest["run"]
    start, end = run.get("start_ns"), run.get("end_ns")
    if start is None or end is None:
        raise InputError(
            "merge: the shards' manifests hold no run window (run.start_ns, run.end_ns) to read power over"
        )
    idle = None if config.idle_before_s is None else _idle_window(shards, start, config.idle_before_s)
    reference = shards.reference
    here = ClockAnchor.now()
    state = MeasureState()
    power = PowerStage(
        config.power_config, state, err, probe_clocks=bool(here.boot_id) and here.boot_id == reference.boot_id
    )
    power.preflight(reference)  # every source reached (one line otherwise) before anything is written
    if not power.probe_clocks:
        _refuse_unrelated_sidecar(power, reference)
    state.idle_pre = idle
    if idle is None:
        state.notes.append(
            "no idle window (a merge captures none): give --idle-before SECONDS to read idle power from "
            "before the run, where the power source has history"
        )
    # The readings just after the window's end (a merge straight after the shards may come before
    # them): waited for by epoch time, the one clock this host shares with shard 0's.
    wait_ns = reference.to_epoch_ns(end) + round(power.settle_s * 1e9) - time.time_ns()
    if wait_ns > 0:
        time.sleep(wait_ns / 1e9)

    folder = shards.write(out)
    ctx = RunContext(shards.plan, _target(shards.manifest), RunOptions(), folder, anchor=reference)
    result = _result(shards, folder, start, end)
    folder.update_manifest(idle=idle_record(state.idle_pre, None, config.idle_before_s or 0.0))
    report = ReportStage(
        config.method, state, err, True, config.max_lateness_ms, config.slo_ttft_s, config.slo_e2e_s
    )
    report.before(ctx)
    power.collect(ctx, result)
    epoch_clock = _note_epoch_clocks(folder, shards)
    report.after(ctx, result)
    problems = [*(f"error flag {code}" for code in report.errors), *epoch_clock]
    if config.strict and problems:
        for problem in problems:
            err.print(f"--strict: {problem}", style="bold red", markup=False, highlight=False)
        return folder.path, 1
    return folder.path, 0


def _idle_window(shards: MergedShards, start: int, seconds: float) -> Window:
    """[start - seconds, start], which must hold no request: the shards' warm-ups ran before the start."""
    window = Window(start - round(seconds * 1e9), start)
    warm = shards.frame.loc[shards.frame["warmup"], ["sent_ns", "done_ns"]]
    times = warm.to_numpy(dtype="float64", na_value=np.nan)
    last = float(np.nanmax(times)) if np.isfinite(times).any() else -math.inf
    if last > window.start_ns:
        raise InputError(
            f"--idle-before {seconds:g}: warm-up requests ran until {(start - last) / 1e9:.1f} s before "
            "the first arm's start, so the GPUs were not idle over that window; give less"
        )
    return window


def _refuse_unrelated_sidecar(power: PowerStage, reference: ClockAnchor) -> None:
    """A sidecar read over HTTP probes its clock offset from here: only right on shard 0's kernel."""
    for source in power.sources:
        reader = source.reader
        if isinstance(reader, SidecarSource) and reader.is_http:
            boot_id = reader.sessions()[-1].header.get("clock", {}).get("boot_id")
            # No boot_id on either side proves nothing shared: refused as well.
            if not boot_id or boot_id != reference.boot_id:
                raise InputError(
                    f"--sidecar {source.location}: neither the sidecar nor this merge runs on shard 0's "
                    "host, so the sidecar's clock cannot be related to the requests' from here (merge on "
                    "shard 0's host, or read the power from --prometheus)"
                )


def _note_epoch_clocks(folder: RunFolder, shards: MergedShards) -> list[str]:
    """Say in the power data (its issues are the report's power_issue flags) where request and power
    times meet only through epoch time; returns those problems, for --strict."""
    power = load_power(folder.path)
    problems = []
    if shards.epoch_mapped:
        problems.append(
            f"shard(s) {', '.join(shards.epoch_mapped)} ran on another host than shard 0: their request "
            "times were put on shard 0's clock through epoch time, so their per-request energies are only "
            "as accurate as the hosts' clock synchronisation (NTP)"
        )
        power.issues.append(problems[-1])
        save_power(folder.path, power)
    if power.clock.get("mode") == "epoch":
        problems.append(
            f"power source {power.source}: its times were mapped through epoch time with no measured "
            "clock offset (clock_unmeasured)"
        )
    return problems


def _target(manifest: dict[str, Any]) -> Target:
    """The shards' target as their manifests describe it (the stages need one; nothing is sent)."""
    target = manifest.get("target") or {}
    api = APIS.get(str(target.get("backend")), OpenAIChat)(target.get("model"))
    return Target(str(target.get("url") or ""), api, bool(target.get("detected")), target.get("server") or {})


def _result(shards: MergedShards, folder: RunFolder, start: int, end: int) -> RunResult:
    arms = [
        ArmRun(a["name"], a["start_ns"], a["end_ns"], a["planned"], a["sent"])
        for a in shards.manifest["arms"]
    ]
    stop = str(shards.manifest["run"].get("stop_reason") or "completed")
    return RunResult(folder, shards.reference, start, end, arms, stop, shards.frame, client_cpu_s=math.nan)
