"""The GPUs' telemetry and the host's RAPL energy, added to a run's analysis before its reports are written.

The join keeps only power; the sidecar's raw samples in the run folder also hold the GPUs' state rows
and the host's energy rows (harness/runfolder/telemetry_samples.py). `add_gpu_telemetry` summarizes them
into `power.telemetry` and adds the throttling and power-limit flags, so summary.json, report.html, the
terminal and `--strict` all see them.
"""

from __future__ import annotations

import os
from typing import Any

from harness.energy import Analysis
from harness.energy.flags import FlagList
from harness.energy.telemetry import Window, summarize_telemetry
from harness.runfolder.telemetry_samples import read_telemetry


def add_gpu_telemetry(analysis: Analysis, run_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> None:
    summary = analysis.summary
    span = summary["run"]["window"]
    if span is None:
        return
    run: Window = ("run", int(span["start_ns"]), int(span["end_ns"]))
    arms: list[Window] = [
        (arm["name"], int(arm["window"]["start_ns"]), int(arm["window"]["end_ns"]))
        for arm in summary["arms"]
        if arm["window"] is not None
    ]
    flags = FlagList()
    summary["power"]["telemetry"] = summarize_telemetry(read_telemetry(run_dir, manifest), run, arms, flags)
    analysis.flags.extend(flags)
    summary["flags"].extend(f.as_dict() for f in flags)
    summary["run"]["flags"] = sorted({*summary["run"]["flags"], *(f.code for f in flags)})
    for arm in summary["arms"]:
        arm["flags"] = sorted({*arm["flags"], *flags.codes(arm["name"])})


def host_energy_line(summary: dict[str, Any]) -> str | None:
    """One line for the terminal: the host's CPU package and DRAM energy over the run (RAPL), apart from
    every GPU figure, or why there is none (None: a summary without telemetry)."""
    host = (summary.get("power", {}).get("telemetry") or {}).get("host_energy")
    if host is None:
        return None
    if not host["available"]:
        return f"host CPU/DRAM energy (RAPL): not measured ({host['note']})"
    parts = [
        f"{d['name']} {'-' if d['run_j'] is None else format(d['run_j'], ',.1f')} J" for d in host["domains"]
    ]
    return f"host CPU/DRAM energy (RAPL) over the run, not in any figure above: {', '.join(parts)}"
