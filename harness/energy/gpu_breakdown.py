"""Per-GPU figures: what each attributed GPU measured and where its energy went, and the host's GPUs
that serve nothing (not selected with `--gpus`), reported apart and attributed to no request.

A model served across GPUs (tensor parallel) draws power on every GPU it uses; the join sums them.
These figures say how that sum splits by GPU (`power.gpus[*]`: energy, attributed, unattributed, mean
power, share), and `host_gpus` describes the GPUs left out of it, which on a real host draw idle power
that is nobody's request's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from harness.energy.flags import FlagList
from harness.energy.grid import Intervals, energy_at
from harness.energy.idle_estimate import IdleEstimate
from harness.energy.split import GpuResult
from harness.energy.summary_types import GpuEnergy, GpuPower, HostGpu, HostGpus
from harness.power.series import EnergySeries, PowerData

# Mean power over the run above the GPU's idle power, as a share of it: a GPU this far above works ...
WORKING_ABOVE_IDLE = 0.10
# ... and one this close to idle while another works serves nothing.
IDLE_ABOVE_IDLE = 0.02


def gpu_energy(intervals: Sequence[Intervals], gpus: Sequence[GpuResult]) -> dict[str, GpuEnergy]:
    """Per attributed GPU over the run window: its energy, the part attributed to requests and the part
    not (the two add up to its energy), its mean power where sampled, and its share of all GPUs' energy."""
    totals = {g.gpu: float(g.energy.sum()) for g in gpus}
    whole = sum(totals.values())
    out: dict[str, GpuEnergy] = {}
    for iv, g in zip(intervals, gpus, strict=True):
        energy, unattributed = totals[g.gpu], float(g.unattributed.sum())
        seconds = float(iv.dt_s.sum())
        out[g.gpu] = {
            "energy_j": energy,
            "attributed_j": energy - unattributed,
            "unattributed_j": unattributed,
            "mean_power_w": energy / seconds if seconds > 0 else None,
            "share": energy / whole if whole > 0 else None,
        }
    return out


def flag_idle_gpus(energy: dict[str, GpuEnergy], idle: IdleEstimate, flags: FlagList) -> None:
    """`gpu_idle_attributed` (warning) for an attributed GPU that drew no more than its idle power while
    another worked: it likely serves nothing (a host GPU left in by a missing `--gpus`), yet its idle
    energy is shared among the requests."""
    above = {
        gpu: (e["mean_power_w"] - idle.used_w[gpu]) / idle.used_w[gpu]
        for gpu, e in energy.items()
        if e["mean_power_w"] is not None and idle.used_w.get(gpu, 0.0) > 0
    }
    if not above or max(above.values()) < WORKING_ABOVE_IDLE:
        return
    working = max(above, key=lambda gpu: above[gpu])
    for gpu, share in sorted(above.items()):
        if share < IDLE_ABOVE_IDLE:
            flags.add(
                "gpu_idle_attributed",
                "warning",
                f"GPU {gpu} drew its idle power through the run ({energy[gpu]['mean_power_w']:.1f} W, "
                f"idle {idle.used_w[gpu]:.1f} W) while GPU {working} worked ({above[working]:.0%} above "
                "its idle): if it does not serve the model, its energy should not be attributed; select "
                "the serving GPUs with --gpus",
                f"gpu {gpu}",
            )


def host_gpus(
    host: PowerData | None,
    selected: Sequence[str] | None,
    attributed: Sequence[GpuPower],
    window: tuple[int, int] | None,
    note: str | None,
    flags: FlagList,
    coverage: Mapping[str, float] | None = None,
) -> HostGpus:
    """The host's GPUs beside the attributed ones, from every GPU the sidecar sampled (`host`), and the
    reads that failed on each GPU in the run window. Raises `gpu_read_failed` for an attributed GPU with
    failed reads: an error where they cost energy (its power samples, `coverage`: the run window's share
    per GPU, do not cover the whole window, or it has no counter and its energy integrates the power it
    missed): every figure summed over the GPUs then misses what it drew while unread, the other GPUs
    still counted. A warning where its energy counter's readings around the failures cover the whole
    window: the counter is cumulative, so the energy it drew meanwhile is all there.
    `host_gpus_unattributed` (info) names the others."""
    if host is None:
        return {
            "selected": _list(selected), "known": False, "note": note, "failed_reads": {}, "unattributed": [],
        }  # fmt: skip
    used = {g["gpu"] for g in attributed}
    failed = {s.gpu: s.failed_reads for s in host.series}
    integrated = {g["gpu"] for g in attributed if g.get("integrated")}
    for gpu in sorted(used):
        if not failed.get(gpu):
            continue
        bridged = (coverage or {}).get(gpu, 0.0) >= 1.0 and gpu not in integrated
        said = f"{failed[gpu]} read(s) of GPU {gpu} failed at the sidecar in the run window"
        if bridged:
            flags.add(
                "gpu_read_failed",
                "warning",
                f"{said}; its energy counter's readings around them cover the whole window, so no energy "
                "is missing (only its power curve is coarser there)",
                f"gpu {gpu}",
            )
        else:
            flags.add(
                "gpu_read_failed",
                "error",
                f"{said}: the energy it drew while unread is missing from the total (the other GPUs are "
                "still counted)",
                f"gpu {gpu}",
            )
    others = [_unattributed(s, window) for s in host.series if s.gpu not in used]
    if others:
        joules = sum(o["energy_j"] or 0.0 for o in others)
        failing = [o["gpu"] for o in others if o["failed_reads"]]
        flags.add(
            "host_gpus_unattributed",
            "info",
            f"GPU {', '.join(o['gpu'] for o in others)} of the power source's host were not selected "
            f"(--gpus {','.join(sorted(used))}): their {joules:.1f} J over the run are reported apart "
            "(power.host) and attributed to no request"
            + (f"; reads of GPU {', '.join(failing)} failed" if failing else ""),
        )
    return {
        "selected": _list(selected),
        "known": True,
        "note": note,
        "failed_reads": {gpu: n for gpu, n in failed.items() if gpu in used},
        "unattributed": others,
    }


def _unattributed(series: EnergySeries, window: tuple[int, int] | None) -> HostGpu:
    energy = mean = None
    if window is not None and len(series.t_ns) >= 2:
        start, end = window
        e = energy_at(series, np.array([start, end], dtype=np.int64))
        if np.all(np.isfinite(e)) and end > start:  # NaN: the series does not cover the window
            energy = float(e[1] - e[0])
            mean = energy / ((end - start) / 1e9)
    return {
        "gpu": series.gpu,
        "uuid": series.uuid,
        "name": series.name,
        "energy_j": energy,
        "mean_power_w": mean,
        "samples": len(series.t_ns),
        "failed_reads": series.failed_reads,
        "issues": list(series.issues),
    }


def _list(selected: Sequence[str] | None) -> list[str] | None:
    return None if selected is None else list(selected)
