"""Idle power: the counter delta over idle windows before and after the run, per GPU.

Without idle windows, the idle power is estimated from the stretches of the run in which no request
was in flight (flagged); without those either, it is taken as 0 W (flagged: then every joule counts
as dynamic and `idle_j` is zero).

`floor_j` is the idle floor of each sample interval, the split's idle part: a window's all-in energy
is that floor plus the energy above it, which is what compares across GPUs with different idle power.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np

from harness.energy.flags import FlagList
from harness.energy.grid import Intervals, window_energy
from harness.energy.windows import IdleWindows, Window
from harness.power.series import EnergySeries

DRIFT_LIMIT = 0.10  # pre/post idle estimates differing by more than this (relative) are flagged


class GpuIdle(TypedDict):
    used_w: float | None
    pre_w: float | None
    post_w: float | None


class IdleAccount(TypedDict):
    """The estimate as summary.json reports it (W summed over GPUs, then per GPU)."""

    mode: str
    power_w: float
    pre_w: float | None
    post_w: float | None
    pre_s: float
    post_s: float
    drift: float | None  # (post - pre) / max(pre, post)
    gpus: dict[str, GpuIdle]


@dataclass
class IdleEstimate:
    mode: str  # the IdleWindows mode used, or "in-run" / "none"
    pre_w: dict[str, float] = field(default_factory=dict)  # per GPU
    post_w: dict[str, float] = field(default_factory=dict)
    used_w: dict[str, float] = field(default_factory=dict)  # per GPU, the constant (or mid-run) value
    pre_s: float = 0.0
    post_s: float = 0.0
    # linear mode: per GPU (t0, p0, t1, p1) to interpolate between the window centres
    linear: dict[str, tuple[int, float, int, float]] = field(default_factory=dict)

    def power_at(self, gpu: str, t_ns: np.ndarray) -> np.ndarray:
        """Idle power of one GPU at the given times (W)."""
        if gpu in self.linear:
            t0, p0, t1, p1 = self.linear[gpu]
            frac = np.clip((t_ns - t0) / max(t1 - t0, 1), 0.0, 1.0)
            return p0 + (p1 - p0) * frac
        return np.full(len(t_ns), self.used_w.get(gpu, 0.0))

    @property
    def total_w(self) -> float:
        return float(sum(self.used_w.values()))

    def as_dict(self) -> IdleAccount:
        pre = sum(self.pre_w.values()) if self.pre_w else None
        post = sum(self.post_w.values()) if self.post_w else None
        drift = None
        if pre is not None and post is not None and max(pre, post) > 0:
            drift = (post - pre) / max(pre, post)
        return {
            "mode": self.mode,
            "power_w": self.total_w,
            "pre_w": pre,
            "post_w": post,
            "pre_s": self.pre_s,
            "post_s": self.post_s,
            "drift": drift,
            "gpus": {
                g: {"used_w": self.used_w.get(g), "pre_w": self.pre_w.get(g), "post_w": self.post_w.get(g)}
                for g in self.used_w
            },
        }


def from_windows(
    series: list[EnergySeries], idle: IdleWindows, flags: FlagList, min_window_s: float
) -> IdleEstimate | None:
    """The estimate from the idle windows, or None when there is no usable window."""
    est = IdleEstimate(mode=idle.mode)
    for key, win in (("pre", idle.pre), ("post", idle.post)):
        if win is None:
            continue
        seconds = 0.0
        for s in series:
            joules, covered = window_energy(s, win.start_ns, win.end_ns)
            if covered <= 0:
                flags.add(
                    "idle_window_unmeasured",
                    "warning",
                    f"{key} idle window has no power samples",
                    f"gpu {s.gpu}",
                )
                continue
            if covered < 0.5 * win.duration_s:
                flags.add(
                    "idle_window_partial",
                    "warning",
                    f"power covers only {covered:.1f} s of the {win.duration_s:.1f} s {key} idle window",
                    f"gpu {s.gpu}",
                )
            getattr(est, f"{key}_w")[s.gpu] = joules / covered
            seconds = max(seconds, covered)
        setattr(est, f"{key}_s", seconds)
        if 0 < seconds < min_window_s:
            flags.add(
                "short_window",
                "warning",
                f"{key} idle window is {seconds:.1f} s, shorter than {min_window_s:.0f} s: the energy "
                "counter's update period makes its idle power uncertain",
            )
    if not est.pre_w and not est.post_w:
        return None
    mode = idle.mode
    for s in series:
        pre, post = est.pre_w.get(s.gpu), est.post_w.get(s.gpu)
        chosen = {"pre": pre, "post": post}.get(mode)
        if mode in ("pre", "post") and chosen is None:
            other = post if mode == "pre" else pre
            flags.add(
                "idle_mode_fallback", "warning", f"no {mode} idle window; using the other one", f"gpu {s.gpu}"
            )
            chosen = other
        available = [p for p in (pre, post) if p is not None]
        if not available:
            continue
        if mode in ("mean", "linear") or chosen is None:
            chosen = float(np.mean(available))
        est.used_w[s.gpu] = float(chosen)
        if mode == "linear" and pre is not None and post is not None:
            assert idle.pre is not None and idle.post is not None
            est.linear[s.gpu] = (_centre(idle.pre), pre, _centre(idle.post), post)
    pre_total, post_total = sum(est.pre_w.values()), sum(est.post_w.values())
    if est.pre_w and est.post_w and max(pre_total, post_total) > 0:
        drift = (post_total - pre_total) / max(pre_total, post_total)
        if abs(drift) > DRIFT_LIMIT:
            flags.add(
                "idle_drift",
                "warning",
                f"idle power drifted from {pre_total:.1f} W before the run to {post_total:.1f} W after "
                f"({drift:+.0%}); idle_j depends on which is used (mode {mode!r})",
            )
    return est


def in_run(per_gpu: dict[str, tuple[float, float]], flags: FlagList, min_s: float) -> IdleEstimate:
    """Estimate from the run's empty stretches: per GPU (joules, seconds) with nothing in flight."""
    est = IdleEstimate(mode="in-run")
    seconds = max((s for _, s in per_gpu.values()), default=0.0)
    if seconds >= min_s:
        est.used_w = {g: j / s for g, (j, s) in per_gpu.items() if s > 0}
        flags.add(
            "idle_from_run",
            "warning",
            f"no idle windows: idle power {est.total_w:.1f} W estimated from {seconds:.1f} s of the run with "
            "no request in flight",
        )
        return est
    est.mode = "none"
    est.used_w = dict.fromkeys(per_gpu, 0.0)
    flags.add(
        "no_idle_power",
        "warning",
        "no idle windows and too little idle time in the run: idle power taken as 0 W, so idle_j is 0 and "
        "all energy counts as dynamic",
    )
    return est


def floor_j(iv: Intervals, est: IdleEstimate) -> np.ndarray:
    """Per interval, the idle floor's joules: idle power times the interval, or all of the interval's
    energy where power dipped below idle (so the rest, above idle, is never negative). The split's rule
    (split.py: `min(P_idle, ΔE/Δt)·Δt`, idle power at the interval's midpoint)."""
    dt = iv.dt_s
    mid = iv.tau[:-1] + (iv.tau[1:] - iv.tau[:-1]) // 2
    idle_w = np.maximum(est.power_at(iv.gpu, mid), 0.0)
    floor: np.ndarray = np.minimum(idle_w * dt, iv.energy)
    return floor


def _centre(win: Window) -> int:
    return (int(win.start_ns) + int(win.end_ns)) // 2
