#!/usr/bin/env python3
"""`--workers K` and `--transport` (issue 19, item 2): how late requests really reach a server that
streams real outputs, and whether the plan's rate is held.

Each point runs the real runner (`execute_plan`, streaming) against `benchmarks/arrival_server.py`
in its own process (one SSE chunk per token, `--itl-ms` apart; the server stamps each request's arrival
with the kernel's receive timestamp, on the shared monotonic clock), with `--start-at` a few seconds
ahead. A bare timer (a separate process on joulebench's event loop that only sleeps to the same
deadlines from the same start, sending nothing) runs beside it: its lateness is what this machine's
scheduler allows anyone at that moment, the floor the runner is measured against. Per point:

  server_ms    arrival at the server - planned (p50 / p99 / max): the truth
  decided_ms   the runner's sent_ns - planned (the send decided), and wire_ms its wire_ns - planned
               (just before the write): how much of server_ms builds up before each stamp
  bare_ms      the bare timer's wake-up lateness (p50 / p99 / max), same deadlines, same time
  realized     (planned span) / (span of server arrivals), over the ok requests: 1.0 = the plan's rate
  loop_lag_p99 the runner's own probe (all workers' wake-ups); cpu_share of the busiest process
  server_self  the arrival server's own loop lag, read delay (its loop's read after the kernel's
               stamp) and CPU share from just before the schedule's start to the runner's end (its
               GET /stats): a server that falls behind delivers its streams late

    python benchmarks/worker_lateness.py                                  # the issue's two cases
    python benchmarks/worker_lateness.py --cases 100:128 --workers 1,2,4 --repeats 3 --out /tmp/w
    python benchmarks/worker_lateness.py --cases 100:128 --workers 1 --transports aiohttp,sender
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from arrival_server import read_stats  # noqa: E402

from harness.backends import resolve_target  # noqa: E402
from harness.runfolder import RunFolder  # noqa: E402
from harness.runner import RunOptions, execute_plan  # noqa: E402
from harness.session.provenance import cpu_model  # noqa: E402
from traffic.builder import build_plan  # noqa: E402
from traffic.spec import PlanSpec  # noqa: E402

# --start-at this far ahead (--lead), plus the warm-up's streams (one after another): the workers start
# and warm up before it. A warm-up that overran it would start the schedule late, in a burst.
_LEAD_S = 6.0
_WARMUP = 3
# The bare timer: sleeps to `start + i/rate` (epoch start mapped through a clock anchor), prints lags.
_BARE = """
import asyncio, json, sys, time
sys.path.insert(0, {repo!r})
from harness.clock import ClockAnchor, new_event_loop
from harness.runner.timing import sleep_until
start_epoch, rate, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
t0 = ClockAnchor.now().to_mono_ns(round(start_epoch * 1e9))
async def main():
    lags = []
    for i in range(n):
        due = t0 + round(i * 1e9 / rate)
        await sleep_until(due)
        lags.append(time.monotonic_ns() - due)
    return lags
print(json.dumps(new_event_loop().run_until_complete(main())))
"""


def run_point(
    url: str,
    rate: float,
    tokens: int,
    workers: int,
    duration: float,
    itl_ms: float,
    transport: str = "aiohttp",
    lead_s: float = _LEAD_S,
) -> dict[str, Any]:
    n = max(50, int(rate * duration))
    spec = {"prompts": "synthetic", "schedules": [f"fixed:interval={1 / rate!r}"], "n": n,
            "max_tokens": tokens, "seed": 1}  # fmt: skip
    plan = build_plan(PlanSpec.parse(spec))
    target = asyncio.run(resolve_target(url))
    start = time.time() + lead_s + _WARMUP * tokens * itl_ms / 1e3
    options = RunOptions(
        workers=workers, warmup=_WARMUP, progress=False, timeout_s=60, start_at_epoch_s=start,
        transport=transport,
    )  # fmt: skip
    bare = subprocess.Popen(
        [sys.executable, "-c", _BARE.format(repo=str(REPO)), repr(start), repr(rate), str(n)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    # Just before the start: a read at the first send's deadline would compete with it for the GIL.
    window = threading.Thread(target=_read_stats_at, args=(url, start - 0.2), daemon=True)
    window.start()
    with tempfile.TemporaryDirectory() as out:
        result = execute_plan(plan, target, RunFolder.create(out, plan), options)
    window.join()
    server_self = read_stats(url)
    bare_lags = np.array(json.loads(bare.communicate(timeout=60)[0]), dtype=np.int64)
    rows = result.measured
    ok = rows[rows["status"] == "ok"]
    truth = np.array([json.loads(t)["x-request-id"] for t in ok["server_timing"]], dtype=np.int64)
    planned = ok["planned_ns"].to_numpy(dtype=np.int64)
    server = (truth - planned) / 1e6
    realized = (planned.max() - planned.min()) / (truth.max() - truth.min()) if len(ok) > 1 else None
    client = result.arms[0].client() or {}
    lag = client.get("loop_lag_ms") or {}
    return {
        "rate": rate,
        "tokens": tokens,
        "workers": workers,
        "transport": transport,
        "requests": n,
        "ok": len(ok),
        "server_ms": _spread(server),
        # Where it builds up, in the runner's own stamps: the send decided (the sender awake; aiohttp:
        # the loop's dispatch), then the bytes handed to the socket.
        "decided_ms": _spread((ok["sent_ns"].to_numpy(dtype=np.int64) - planned) / 1e6),
        "wire_ms": _spread((ok["wire_ns"].to_numpy(dtype=np.int64) - planned) / 1e6),
        "bare_ms": _spread(bare_lags / 1e6),
        "p99_over_bare": float(np.percentile(server, 99) / max(np.percentile(bare_lags / 1e6, 99), 1e-3)),
        "realized": None if realized is None else float(realized),
        "server_self": server_self,
        "loop_lag_p99_ms": lag.get("p99"),  # type: ignore[union-attr]
        "cpu_share_busiest": client.get("cpu_share"),
        "cpu_share_total": client.get("cpu_share_total", client.get("cpu_share")),
        "loadavg": os.getloadavg()[0],
    }


def _read_stats_at(url: str, start_epoch: float) -> None:
    """Start the server's stats window at `start_epoch`, just before the schedule (the warm-up left out)."""
    while (left := start_epoch - time.time()) > 0:
        time.sleep(left)
    read_stats(url)


def _spread(ms: np.ndarray) -> dict[str, float]:
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}


def _flat(p: dict[str, Any]) -> dict[str, float]:
    return {
        "server_p50": p["server_ms"]["p50"], "server_p99": p["server_ms"]["p99"],
        "server_max": p["server_ms"]["max"], "bare_p99": p["bare_ms"]["p99"],
        "p99_over_bare": p["p99_over_bare"], "realized": p["realized"] or 0.0,
        "loop_lag_p99": p["loop_lag_p99_ms"] or 0.0, "cpu_busiest": p["cpu_share_busiest"] or 0.0,
        "cpu_total": p["cpu_share_total"] or 0.0,
        "server_lag_p99": p["server_self"]["loop_lag_ms"]["p99"] or 0.0,
        "server_cpu": p["server_self"]["cpu_share"],
    }  # fmt: skip


RANGED = ("server_p99", "p99_over_bare", "realized")  # the figures the table gives with their range
HELD = 0.005  # the "realized >= 0.995 of plan", and as far above it
_DEFAULT = "aiohttp"  # the transport a point is of unless it names one (the runner's default until auto)


def medians(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (rate, tokens, workers, transport): the median of each figure over the repeats, the range
    (min, max) of those in RANGED, and how many runs held the plan's rate (realized within HELD of 1,
    every request ok: a rate above the plan is arrivals bunched after a stall, not a plan held). Points
    without a transport (runs made before it was a choice) used the default, aiohttp."""
    groups: dict[tuple[float, int, int, str], list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault((p["rate"], p["tokens"], p["workers"], p.get("transport", _DEFAULT)), []).append(p)
    out = []
    for (rate, tokens, workers, transport), runs in groups.items():
        flat = [_flat(r) for r in runs]
        held = sum(abs((r["realized"] or 0.0) - 1) <= HELD and r["ok"] == r["requests"] for r in runs)
        figures = {key: float(statistics.median(f[key] for f in flat)) for key in flat[0]}
        ranges = {f"{key}_range": [min(f[key] for f in flat), max(f[key] for f in flat)] for key in RANGED}
        key: dict[str, Any] = {"rate": rate, "tokens": tokens, "workers": workers}
        if transport != _DEFAULT:
            key["transport"] = transport
        out.append({**key, "runs": len(runs), "held": held, **figures, **ranges})
    return out


def _ranged(r: dict[str, Any], key: str, digits: int) -> str:
    low, high = r[f"{key}_range"]
    return f"{r[key]:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def table(rows: list[dict[str, Any]]) -> str:
    """Medians over the runs; the server-side p99, its ratio to the bare timer's and the realized rate
    with their (min–max) over the runs. A transport column when some row is not the default's."""
    transports = any("transport" in r for r in rows)
    head = "| rate/s | tokens | workers |" + (" transport |" if transports else "")
    lines = [
        f"{head} runs held (realized 1 ± 0.005) | server lateness p50 / max (ms) "
        "| server p99 (ms) | bare timer p99 | p99 / bare p99 | realized / planned | loop lag p99 "
        "| CPU busiest / total | server's own lag p99 / CPU |",
        "|---:|---:|---:|" + ("---|" if transports else "") + "---|---|---|---:|---|---|---:|---|---|",
    ]
    for r in rows:
        variant = f" {r.get('transport', _DEFAULT)} |" if transports else ""
        lines.append(
            f"| {r['rate']:g} | {r['tokens']} | {r['workers']} |{variant} {r['held']} of {r['runs']} "
            f"| {r['server_p50']:.2f} / {r['server_max']:.2f} | {_ranged(r, 'server_p99', 2)} "
            f"| {r['bare_p99']:.2f} | {_ranged(r, 'p99_over_bare', 2)} | {_ranged(r, 'realized', 4)} "
            f"| {r['loop_lag_p99']:.2f} | {r['cpu_busiest']:.2f} / {r['cpu_total']:.2f} "
            f"| {r['server_lag_p99']:.2f} / {r['server_cpu']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--cases", default="100:128,1000:16", help="RATE:TOKENS,... (streamed)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--transports", default=_DEFAULT, help="--transport values: aiohttp,sender")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of schedule per run")
    parser.add_argument(
        "--lead", type=float, default=_LEAD_S,
        help="seconds from a run's launch to its --start-at (8 workers needed more than 6 on 16 slow cores)",
    )  # fmt: skip
    parser.add_argument("--itl-ms", type=float, default=10.0, help="the server's time between tokens")
    parser.add_argument("--out", type=Path, help="write worker_lateness.json and .md here")
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "arrival_server.py"), "--itl-ms", f"{args.itl_ms}"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    cases = [(float(r), int(t)) for r, t in (c.split(":") for c in args.cases.split(","))]
    points = []
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        for _ in range(args.repeats):  # repeats outermost: a busy spell of the machine hits every variant
            for rate, tokens in cases:
                for k in (int(w) for w in args.workers.split(",")):
                    for transport in args.transports.split(","):
                        point = run_point(
                            url, rate, tokens, k, args.duration, args.itl_ms, transport, args.lead
                        )
                        points.append(point)
                        print(json.dumps(points[-1]), file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    rows = medians(points)
    result = {
        "machine": {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "command": " ".join(["python", "benchmarks/worker_lateness.py", *sys.argv[1:]]),
        "date_utc": time.strftime("%Y-%m-%d", time.gmtime()),
        "itl_ms": args.itl_ms,
        "duration_s": args.duration,
        "medians": rows,
        "points": points,
    }
    text = table(rows)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "worker_lateness.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "worker_lateness.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
