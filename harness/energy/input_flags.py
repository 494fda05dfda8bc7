"""Flags about what the join was given: the power data, how it covers the run, and how fine it is
against the requests it splits among."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.energy.figures import RequestTimes
from harness.energy.flags import FlagList
from harness.energy.grid import Intervals
from harness.energy.windows import Window
from harness.power.series import PowerData


def power_flags(power: PowerData, flags: FlagList) -> None:
    for issue in power.issues:
        flags.add("power_issue", "warning", issue)
    if not power.series or all(len(s.t_ns) < 2 for s in power.series):
        flags.add(
            "no_power_data",
            "error",
            f"no power samples from source {power.source or '?'}: energy figures are undefined",
        )
    for s in power.series:
        for issue in s.issues:
            flags.add("power_issue", "warning", issue, f"gpu {s.gpu}")
        if s.integrated:
            flags.add(
                "power_integrated",
                "info",
                "energy integrated from power readings (no hardware energy counter)",
                f"gpu {s.gpu}",
            )
    unc = clock_uncertainty_ns(power)
    if unc:
        flags.add(
            "clock_offset",
            "info",
            f"power times were mapped from another clock with ±{float(unc) / 1e6:.3f} ms uncertainty",
        )
    if isinstance(power.clock, dict) and power.clock.get("mode") == "epoch":
        # No measured offset: epoch times were taken at face value. That is not the same clock, and the
        # error (the hosts' clock difference, NTP: typically milliseconds) is unknown, so say so.
        flags.add(
            "clock_unmeasured",
            "warning",
            "power times were mapped through epoch time with no measured clock offset: per-request "
            "energies are shifted by however much the power source's clock differs from ours",
        )


def clock_uncertainty_ns(power: PowerData) -> float | None:
    """How uncertain the mapping of the power clock onto the harness clock is (None: same clock)."""
    raw = power.clock.get("uncertainty_ns") if isinstance(power.clock, dict) else None
    try:
        return None if raw is None else abs(float(raw))
    except (TypeError, ValueError):
        return None


def run_coverage_flags(
    power: PowerData, intervals: list[Intervals], run: Window, min_share: float, flags: FlagList
) -> None:
    for s, iv in zip(power.series, intervals, strict=True):
        scope = f"gpu {s.gpu}"
        if len(s.t_ns) < 2:
            continue
        if len(iv.tau) < 2:
            flags.add(
                "power_outside_run",
                "error",
                f"power samples ({_span(s.t_ns[0], s.t_ns[-1])}) do not overlap the run window "
                f"({_span(run.start_ns, run.end_ns)}): are power and requests on the same clock?",
                scope,
            )
            continue
        share = iv.covered_s / run.duration_s if run.duration_s > 0 else 1.0
        if share < min_share:
            # A warning about the run as a whole: the arms whose windows it leaves short are errors
            # (`power_incomplete`, raised by the summary per arm).
            flags.add(
                "power_partial",
                "warning",
                f"power samples cover {share:.1%} of the run window; energy outside them is missing",
                scope,
            )
        if iv.gaps:
            flags.add(
                "power_gaps",
                "warning",
                f"{iv.gaps} gap(s) in the power samples ({iv.gap_s:.1f} s, longer than 5x the median "
                f"interval of {iv.median_dt_s * 1e3:.0f} ms): their energy is exact but its split is smeared",
                scope,
            )
        if iv.repeats:
            flags.add(
                "counter_repeats",
                "info",
                f"{iv.repeats} reading(s) repeated the counter value within its update lag and were merged",
                scope,
            )


def request_flags(
    per_request: pd.DataFrame,
    times: RequestTimes,
    warmup: np.ndarray,
    intervals: list[Intervals],
    power: PowerData,
    counter_period_s: float,
    flags: FlagList,
) -> None:
    """Requests with no power under them, and requests too short for the power samples to resolve."""
    pr = per_request
    measured = ~warmup & pr["sent_ns"].notna().to_numpy() if "sent_ns" in pr else ~warmup
    energy = pr["energy_j"].to_numpy()
    no_energy = int(np.count_nonzero(measured & ~np.isfinite(energy) & pr["done_ns"].notna().to_numpy()))
    if no_energy and intervals:
        flags.add(
            "requests_without_power",
            "warning",
            f"{no_energy} measured request(s) overlap no power samples: their energy_j is null",
        )
    e2e = ((times.done - times.sent) / 1e9)[measured & times.has_done & times.has_sent]
    if len(e2e) == 0:
        return
    med_e2e = float(np.median(e2e))
    sample_dt = [iv.median_dt_s for iv in intervals if np.isfinite(iv.median_dt_s)]
    if sample_dt and max(sample_dt) > med_e2e:
        flags.add(
            "coarse_power",
            "warning",
            f"the power samples ({max(sample_dt) * 1e3:.0f} ms apart) are coarser than the median request "
            f"({med_e2e * 1e3:.0f} ms): per-request energies are shares of interval means; totals are exact",
        )
    elif med_e2e < counter_period_s:
        flags.add(
            "short_requests",
            "info",
            f"the median request ({med_e2e * 1e3:.0f} ms) is shorter than the counter update period "
            f"({counter_period_s * 1e3:.0f} ms): per-request energies are shares of interval averages",
        )
    unc = clock_uncertainty_ns(power)
    if unc is not None and unc / 1e9 > 0.1 * med_e2e:
        flags.add(
            "clock_uncertain",
            "warning",
            f"the power clock's offset is uncertain by ±{unc / 1e6:.1f} ms, over 10% of the median request "
            f"({med_e2e * 1e3:.0f} ms): per-request energies may be shifted between neighbours",
        )


def _span(a: int, b: int) -> str:
    return f"{int(a) / 1e9:.3f}-{int(b) / 1e9:.3f} s"
