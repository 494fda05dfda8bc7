"""The host's GPUs beside the attributed ones, added to a run's analysis before its reports are written.

The join sees only the GPUs of the run's `--gpus` (power.parquet); the sidecar's raw samples in the run
folder hold all of the host's GPUs and the reads that failed. `add_host_gpus` puts what they say into
the summary (`power.host`, `power.gpus[*].failed_reads`) and its flags, so summary.json, report.html,
the terminal and `--strict` all see them.
"""

from __future__ import annotations

import os
from typing import Any

from harness.energy import Analysis
from harness.energy.flags import FlagList
from harness.energy.gpu_breakdown import host_gpus
from harness.runfolder.host_samples import read_host_samples


def add_host_gpus(analysis: Analysis, run_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> None:
    summary = analysis.summary
    span = summary["run"]["window"]
    window = None if span is None else (int(span["start_ns"]), int(span["end_ns"]))
    samples = read_host_samples(run_dir, manifest, window)
    flags = FlagList()
    gpus = summary["power"]["gpus"]
    coverage = (summary["run"].get("power_coverage") or {}).get("by_gpu")  # did failures cost energy?
    host = host_gpus(samples.data, samples.selected, gpus, window, samples.note, flags, coverage)
    summary["power"]["host"] = host
    if host["known"]:
        for gpu in gpus:
            gpu["failed_reads"] = host["failed_reads"].get(gpu["gpu"], 0)
    analysis.flags.extend(flags)
    summary["flags"].extend(f.as_dict() for f in flags)
    summary["run"]["flags"] = sorted({*summary["run"]["flags"], *(f.code for f in flags)})
