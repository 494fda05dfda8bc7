#!/usr/bin/env python3
"""A non-circular check of the per-request split on real hardware (issue 16): isolated requests.

With requests separated by idle gaps of a second or more, each request's above-idle energy can be read
straight off the GPU's energy counter: the counter's delta over a window from just before the request
was sent to a tail after it ended (both edges in idle, where the power is flat and interpolating the
counter between its reads is exact enough), minus the idle baseline over the window. The join never
sees that window: it cuts the series at its samples (shifted by the estimated power lag) and gives
each sample interval to the requests in flight in it. With one request in flight at a time there is no
sharing to test, so what a request's attributed above-idle energy (`dynamic_j` of the join, computed
here with each --method asked for, whatever the folder's own report used) agreeing with the counter's
says is that its energy lands on it and not on the idle after it: the lag and the tail are handled.
How energy is shared among concurrent requests is checked on the mock, against its ground truth
(benchmarks/split_error.py).

The idle baseline is the run's own idle estimate (summary.json `idle.power_w`, measured before and after
the requests), the one the split used: the check tests the attribution, not the idle estimate.

    python benchmarks/gpu/isolated_check.py RUN_DIR [--method time,steps] [--power-lag auto]
        [--before 0.25] [--tail 0.75] [--json OUT]

Prints one row per request and method, and per method the median and largest error; exit status 1 when
a method's request is outside ±10% or its median outside ±3% (the issue's acceptance).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.energy.analysis_options import AnalysisOptions
from harness.energy.power_lag import parse_power_lag
from harness.power.samplelog import ENERGY_ROW, FLAG_REJECTED, read_log_file
from harness.report.format import fmt_power_lag
from harness.report.run_inputs import analyze_run
from harness.runfolder import RunFolder
from harness.runfolder.power_file import RAW_SAMPLES_FILE

PER_REQUEST_LIMIT = 0.10
MEDIAN_LIMIT = 0.03


def counter_series(folder: Path, gpu: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The energy counter's accepted reads (monotonic ns on the run's clock, joules) from the sidecar's
    sample log, every session of it; refused or failed reads (flagged rows) left out."""
    try:
        anchor = ClockAnchor.from_dict(RunFolder(folder).manifest()["clock"]["anchor"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{folder}: manifest.json has no clock anchor (clock.anchor)") from None
    t, e = [], []
    for session in read_log_file(folder / RAW_SAMPLES_FILE):
        remote = ClockAnchor.from_dict(session.header["clock"])
        # The counter's times are the sidecar's monotonic clock: the run's only on the same kernel.
        if not remote.boot_id or remote.boot_id != anchor.boot_id:
            raise InputError(
                f"{folder / RAW_SAMPLES_FILE}: the sidecar ran on another kernel (boot_id "
                f"{remote.boot_id!r}, the run's {anchor.boot_id!r}): its times are not the run's"
            )
        rows = session.rows
        keep = (rows.kind == ENERGY_ROW) & (rows.gpu == gpu) & np.isfinite(rows.energy_j)
        keep &= (rows.flags.astype(np.int64) & FLAG_REJECTED) == 0
        t.append(rows.t_ns[keep])
        e.append(rows.energy_j[keep])
    return np.concatenate(t).astype(np.int64), np.concatenate(e).astype(np.float64)


def check(
    folder: Path, method: str, power_lag: str, before_s: float, tail_s: float
) -> tuple[pd.DataFrame, str | None]:
    """One row per isolated request: the counter's above-idle energy and the join's (with `method`); and
    the power lag the join applied, as the report words it."""
    _, analysis = analyze_run(folder, method=method, options=AnalysisOptions(power_lag=power_lag))
    lag = fmt_power_lag(dict(analysis.summary.get("power_lag") or {}) or None)
    idle_w = float(analysis.summary["idle"]["power_w"])  # type: ignore[arg-type]
    requests = RunFolder(folder).requests()
    rows = requests[(~requests["warmup"]) & (requests["status"] == "ok")].sort_values("sent_ns")
    attributed = analysis.requests.set_index("request_id")["dynamic_j"]
    t, e = counter_series(folder)
    if len(t) < 2:
        raise InputError(f"{folder / RAW_SAMPLES_FILE}: fewer than two energy counter reads of GPU 0")
    out = []
    starts = rows["sent_ns"].to_numpy(dtype=np.int64) - int(before_s * 1e9)
    ends = rows["done_ns"].to_numpy(dtype=np.int64) + int(tail_s * 1e9)
    # Every request of the log (warm-up and failed ones too) whose lifetime could share a window.
    others = requests.dropna(subset=["sent_ns", "done_ns"])
    for (_, req), start, end in zip(rows.iterrows(), starts, ends, strict=True):
        if start < t[0] or end > t[-1]:
            continue
        overlap = (
            (others["request_id"] != req["request_id"])
            & (others["sent_ns"] < end)
            & (others["done_ns"] > start)
        )
        if overlap.any():  # not isolated (e.g. just after the warm-up request): its delta holds two
            continue
        delta = float(np.interp(end, t, e) - np.interp(start, t, e))
        above = delta - idle_w * (end - start) / 1e9
        mine = float(attributed.get(req["request_id"], np.nan))
        out.append(
            {
                "method": method,
                "request_id": int(req["request_id"]),
                "window_s": (end - start) / 1e9,
                "counter_above_idle_j": above,
                "attributed_above_idle_j": mine,
                "error": (mine - above) / above if above > 0 else float("nan"),
            }
        )
    return pd.DataFrame(out), lag


def verdict(frame: pd.DataFrame) -> dict[str, Any]:
    """The acceptance over one method's rows. A request without an error (no attributed energy, or a
    counter delta of no energy above idle) fails it: pandas' median and max would skip it silently."""
    error = frame["error"].to_numpy(dtype=float) if len(frame) else np.zeros(0)
    known = bool(len(error)) and bool(np.all(np.isfinite(error)))
    median = float(np.median(error)) if known else float("nan")
    worst = float(np.max(np.abs(error))) if known else float("nan")
    ok = known and worst <= PER_REQUEST_LIMIT and abs(median) <= MEDIAN_LIMIT
    return {"requests": len(frame), "median": median, "worst": worst, "pass": ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--method", default="time,steps", help="split methods to check, comma-separated")
    ap.add_argument("--power-lag", default="auto", type=parse_power_lag, help="auto, off or seconds")
    ap.add_argument("--before", type=float, default=0.25, help="seconds of idle before each send")
    ap.add_argument("--tail", type=float, default=0.75, help="seconds after each response ends")
    ap.add_argument("--json", type=Path, help="write the rows and the verdicts here")
    args = ap.parse_args()
    frames, verdicts = [], {}
    try:
        for method in args.method.split(","):
            frame, lag = check(args.run, method, args.power_lag, args.before, args.tail)
            if frame.empty:
                raise InputError(f"{args.run}: no isolated request whose window the counter covers")
            verdicts[method] = verdict(frame)
            frames.append(frame)
    except InputError as exc:
        sys.exit(f"isolated_check: {exc}")
    table = pd.concat(frames).pivot(index="request_id", columns="method")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    print(lag)
    for method, v in verdicts.items():
        word = "PASS" if v["pass"] else "FAIL"
        print(
            f"{method}: {v['requests']} requests, median error {v['median']:+.2%} "
            f"(limit ±{MEDIAN_LIMIT:.0%}), largest |error| {v['worst']:.2%} "
            f"(limit ±{PER_REQUEST_LIMIT:.0%}): {word}"
        )
    if args.json:
        rows = pd.concat(frames).to_dict("records")
        args.json.write_text(
            json.dumps({"power_lag": args.power_lag, "verdicts": verdicts, "rows": rows}, indent=1)
        )
    sys.exit(0 if all(v["pass"] for v in verdicts.values()) else 1)


if __name__ == "__main__":
    main()
