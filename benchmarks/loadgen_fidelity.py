#!/usr/bin/env python3
"""Load-generator fidelity: does `joulebench run` send a fixed schedule on time?

For fixed schedules at each rate (streaming and not, per HTTP transport) it runs the real runner
(`harness.runner.execute_plan`) against the mock server (`synthetic-fast` profile: 1 ms steps, never
the bottleneck) in a separate process, and reports from the request log:

  realized / planned rate   (n - 1) / (last sent - first sent) over (n - 1) / (last due - first due)
  lateness p50 / p99 / max  sent_ns - planned_ns (dispatch; the JSON also has wire_ns - planned_ns,
                            the time the request's last byte went to the socket: what summaries use;
                            benchmarks/wire_lateness.py checks both against a server's own arrivals)
  client CPU per request    this process's CPU time over the run / requests
  GC in window              the cyclic garbage collector's passes while requests were due or in
                            flight (each pass stops the event loop), count and total ms

plus, from a sweep of rates, the highest with p99 lateness under 1 ms, and the floor: the runner's
event loop waking at the same deadlines with nothing else to do (no HTTP). Targets (issue 4): realized
rate within 0.5% and p99 lateness <= 1 ms up to 1,000 req/s.

Writes to --out (default benchmarks/results/): loadgen_fidelity.json (every point, the machine, the
command), loadgen_fidelity_requests.parquet (raw per-request times of every point) and
loadgen_fidelity.md (the summary table). Numbers depend on the machine and on what else runs on it:
the JSON records the CPU model and load average before and after each point.

    python benchmarks/loadgen_fidelity.py                        # the full set (~3 minutes)
    python benchmarks/loadgen_fidelity.py --rates 500 --duration 3 --transports aiohttp --no-sweep
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the package, and the process helpers the tests use

from joulebench_testkit import run_mock_server  # noqa: E402

from harness.backends import resolve_target  # noqa: E402
from harness.clock import new_event_loop  # noqa: E402
from harness.runfolder import RunFolder  # noqa: E402
from harness.runner import RunOptions, execute_plan  # noqa: E402
from harness.runner.timing import sleep_until  # noqa: E402
from harness.session.provenance import cpu_model, versions  # noqa: E402
from traffic.builder import build_plan  # noqa: E402
from traffic.spec import PlanSpec  # noqa: E402

TARGET_P99_MS = 1.0
TARGET_RATE_ERROR = 0.005


@contextmanager
def gc_passes() -> Iterator[list[tuple[int, int]]]:
    """Collect (start_ns, duration_ns) of every cyclic-GC pass while the block runs."""
    log: list[tuple[int, int]] = []
    started = [0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.monotonic_ns()
        else:
            log.append((started[0], time.monotonic_ns() - started[0]))

    gc.callbacks.append(callback)
    try:
        yield log
    finally:
        gc.callbacks.remove(callback)


def run_point(url: str, rate: float, stream: bool, transport: str, duration: float, precise: bool = True,
              profile: Path | None = None) -> tuple[dict[str, Any], pd.DataFrame]:  # fmt: skip
    n = max(50, int(rate * duration))
    plan = build_plan(
        PlanSpec.parse(
            {"prompts": "synthetic", "schedules": [f"fixed:interval={1 / rate!r}"], "n": n, "max_tokens": 8,
             "ignore_eos": True, "seed": 1}
        )
    )  # fmt: skip
    target = asyncio.run(resolve_target(url))
    # A client that cannot keep up stops sending after twice the planned span (the rest are not_sent),
    # so one hopeless point cannot take the whole benchmark hostage.
    options = RunOptions(
        stream=stream, transport=transport, warmup=20, progress=False, precise_timer=precise,
        time_limit_s=2 * duration, grace_s=5, timeout_s=30,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        folder = RunFolder.create(out, plan)
        load_before = os.getloadavg()
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        with gc_passes() as gc_log:
            result = execute_plan(plan, target, folder, options)
        if profiler:
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(40)
            profile.write_text(text.getvalue())
        load_after = os.getloadavg()
    rows = result.measured
    sent = np.sort(rows["sent_ns"].dropna().to_numpy(dtype=np.int64))
    due = np.sort(rows["planned_ns"].to_numpy(dtype=np.int64))
    lateness_ms = rows["lateness_ns"].dropna().to_numpy(dtype=float) / 1e6
    wire_ms = (rows["wire_ns"] - rows["planned_ns"]).dropna().to_numpy(dtype=float) / 1e6
    window = (due[0], int(rows["done_ns"].max()))
    in_window = [d for t, d in gc_log if window[0] <= t <= window[1]]
    realized = (len(sent) - 1) / ((sent[-1] - sent[0]) / 1e9)
    planned = (len(due) - 1) / ((due[-1] - due[0]) / 1e9)
    point = {
        "transport": transport,
        "stream": stream,
        "precise_timer": precise,
        "rate": rate,
        "requests": n,
        "realized_rate": realized,
        "planned_rate": planned,
        "rate_ratio": realized / planned,
        "lateness_ms": _spread(lateness_ms),
        "wire_lateness_ms": _spread(wire_ms) if len(wire_ms) else None,
        "status": {str(k): int(v) for k, v in rows["status"].value_counts().items()},
        "gc_in_window": {
            "passes": len(in_window),
            "total_ms": sum(in_window) / 1e6,
            "max_ms": max(in_window, default=0) / 1e6,
        },
        "client_cpu_us_per_request": 1e6 * result.client_cpu_s / (len(sent) + options.warmup),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    # Raw data, compact: times relative to the point's first deadline.
    t0 = int(due[0])
    raw = pd.DataFrame(
        {
            "transport": transport,
            "stream": stream,
            "rate": rate,
            "precise_timer": precise,
            "request_id": rows["request_id"].to_numpy(dtype=np.int64),
            "planned_ns": rows["planned_ns"].to_numpy(dtype=np.int64) - t0,
            "lateness_ns": rows["lateness_ns"].astype("Int64"),
            "wire_lateness_ns": (rows["wire_ns"] - rows["planned_ns"]).astype("Int64"),
            "e2e_ns": (rows["done_ns"] - rows["sent_ns"]).astype("Int64"),
            "status": rows["status"].astype("category"),
        }
    )
    return point, raw


def timer_floor(rate: float, duration: float) -> dict[str, Any]:
    """Lateness of the runner's own timer (its event loop and `sleep_until`) with no requests: what is
    left of the lateness when no HTTP work shares the loop."""

    async def wake_ups() -> np.ndarray:
        n = max(50, int(rate * duration))
        start = time.monotonic_ns() + 50_000_000
        late = np.empty(n, dtype=np.int64)
        for i in range(n):
            due = start + round(i * 1e9 / rate)
            await sleep_until(due)
            late[i] = time.monotonic_ns() - due
        return late / 1e6

    loop = new_event_loop(precise=True)
    try:
        late_ms = loop.run_until_complete(wake_ups())
    finally:
        loop.close()
    return {
        "rate": rate,
        "wake_ups": len(late_ms),
        "lateness_ms": _spread(late_ms),
    }


def _spread(ms: np.ndarray) -> dict[str, float]:
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}


def _key(point: dict[str, Any]) -> tuple:
    return point["transport"], point["stream"], point["rate"], point["precise_timer"]


def passes(point: dict[str, Any]) -> bool:
    return point["lateness_ms"]["p99"] <= TARGET_P99_MS and abs(point["rate_ratio"] - 1) <= TARGET_RATE_ERROR


def summary_md(result: dict[str, Any]) -> str:
    lines = [
        "# Load-generator fidelity",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']['cpu_model']}, {result['machine']['cpus']} CPUs; "
        f"load average before the first point {result['machine']['loadavg_start'][0]:.2f}.  ",
        "Target: the mock server (`synthetic-fast` profile, own process), fixed schedules, 8 output tokens.",
        "",
        "| transport | stream | timer | rate (req/s) | realized / planned | lateness p50 / p99 / max (ms) "
        "| GC in window (passes / ms) | client CPU µs/req | load avg | meets target |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for p in result["points"]:
        lat = p["lateness_ms"]
        stream = "yes" if p["stream"] else "no"
        timer = "precise" if p["precise_timer"] else "epoll"
        ok = "yes" if passes(p) else "no"
        gc_window = p["gc_in_window"]
        lines.append(
            f"| {p['transport']} | {stream} | {timer} | {p['rate']:g} | {p['rate_ratio']:.4f} "
            f"| {lat['p50']:.3f} / {lat['p99']:.3f} / {lat['max']:.1f} "
            f"| {gc_window['passes']} / {gc_window['total_ms']:.1f} "
            f"| {p['client_cpu_us_per_request']:.0f} | {p['loadavg_after'][0]:.2f} | {ok} |"
        )
    lines += [
        "",
        "Floor: the same event loop and timer waking at the same deadlines with no HTTP work:",
        "",
        "| rate (wake-ups/s) | lateness p50 / p99 / max (ms) |",
        "|---:|---|",
    ]
    for f in result["timer_floor"]:
        lat = f["lateness_ms"]
        lines.append(f"| {f['rate']:g} | {lat['p50']:.3f} / {lat['p99']:.3f} / {lat['max']:.1f} |")
    lines += ["", "Highest rate in the sweep with p99 lateness <= 1 ms and realized rate within 0.5%:", ""]
    for key, value in result["highest_passing_rate"].items():
        lines.append(f"- {key}: {value if value is not None else 'none of the swept rates'} req/s")
    lines += [
        "",
        "Raw data: loadgen_fidelity.json (points) and loadgen_fidelity_requests.parquet (every request).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", help="base URL of a running server (default: start the mock)")
    parser.add_argument("--rates", default="100,500,1000,2000", help="comma-separated req/s")
    parser.add_argument("--sweep", default="200,300,400,600,700,800,1200,1500",
                        help="extra rates (with --rates) searched for the highest passing one")  # fmt: skip
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point")
    parser.add_argument("--transports", default="aiohttp,httpx")
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile the 1,000 req/s streaming point"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    transports = args.transports.split(",")
    args.out.mkdir(parents=True, exist_ok=True)

    points, raws = [], []
    with tempfile.TemporaryDirectory() as logs, ExitStack() as stack:
        url = args.target
        if url is None:
            url = stack.enter_context(run_mock_server("--profile", "synthetic-fast", log_dir=Path(logs))).url
        result: dict[str, Any] = {
            "command": shlex.join([Path(sys.executable).name, *sys.argv]),
            "machine": {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
            "versions": versions(),
            "targets": {"p99_lateness_ms": TARGET_P99_MS, "rate_error": TARGET_RATE_ERROR},
        }
        result["timer_floor"] = [timer_floor(rate, args.duration) for rate in rates]
        for transport in transports:
            for stream in (False, True):
                for rate in rates:
                    point, raw = run_point(url, rate, stream, transport, args.duration)
                    points.append(point)
                    raws.append(raw)
                    print(json.dumps(point), flush=True)
        # What the precise timer buys: the default asyncio selector at one moderate rate.
        point, raw = run_point(url, 500, False, transports[0], args.duration, precise=False)
        points.append(point)
        raws.append(raw)
        print(json.dumps(point), flush=True)
        highest: dict[str, float | None] = {}
        if not args.no_sweep:
            swept = sorted({*rates, *(float(r) for r in args.sweep.split(","))})
            for stream in (False, True):
                best = None
                for rate in swept:
                    point = next((p for p in points if _key(p) == (transports[0], stream, rate, True)), None)
                    if point is None:
                        point, raw = run_point(url, rate, stream, transports[0], args.duration)
                        points.append(point)
                        raws.append(raw)
                        print(json.dumps(point), flush=True)
                    if passes(point):
                        best = rate
                highest[f"{transports[0]}, {'streaming' if stream else 'non-streaming'}"] = best
        if args.profile:
            run_point(url, 1000, True, transports[0], args.duration, profile=args.out / "loadgen_profile.txt")
    result["points"] = points
    result["highest_passing_rate"] = highest
    (args.out / "loadgen_fidelity.json").write_text(json.dumps(result, indent=2) + "\n")
    pd.concat(raws, ignore_index=True).to_parquet(
        args.out / "loadgen_fidelity_requests.parquet", index=False, compression="zstd"
    )
    (args.out / "loadgen_fidelity.md").write_text(summary_md(result))
    print(summary_md(result))


if __name__ == "__main__":
    main()
