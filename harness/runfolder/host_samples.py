"""Every GPU the sidecar sampled during a run, from the run's raw samples (`power_samples.jsonl`).

`power.parquet` keeps only the GPUs the join used (the run's `--gpus`); the raw samples keep all of the
sidecar's GPUs and the reads that failed at the sidecar, which is what the report needs to describe
the host's other GPUs and a GPU whose reads failed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.power.series import PowerData
from harness.power.sources import SidecarSource
from harness.runfolder.power_file import RAW_SAMPLES_FILE, absent_samples_note


@dataclass(frozen=True)
class HostSamples:
    data: PowerData | None  # every GPU the sidecar sampled, over the window; None: see `note`
    selected: list[str] | None  # the run's --gpus (None: every GPU the source had)
    note: str | None


def read_host_samples(
    run_dir: str | os.PathLike[str], manifest: dict[str, Any], window: tuple[int, int] | None
) -> HostSamples:
    """The raw samples of the run's primary sidecar over `window` (ns, our clock)."""
    power = manifest.get("power") or {}
    raw_gpus = power.get("gpus")
    selected = [str(g) for g in raw_gpus] if isinstance(raw_gpus, list) else None
    path = Path(run_dir) / RAW_SAMPLES_FILE
    if not path.is_file():
        return HostSamples(None, selected, absent_samples_note(manifest))
    if window is None:
        return HostSamples(None, selected, "no run window")
    try:
        anchor = ClockAnchor.from_dict((manifest.get("clock") or {})["anchor"])
        data = SidecarSource(path, anchor=anchor).read(*window)
    except (KeyError, TypeError, ValueError) as exc:
        return HostSamples(None, selected, f"manifest.json: clock.anchor is unusable ({exc})")
    except InputError as exc:
        return HostSamples(None, selected, str(exc))
    return HostSamples(data, selected, None)
