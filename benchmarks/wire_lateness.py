#!/usr/bin/env python3
"""How late requests really reach the server, against the runner's own stamps (issue 19).

Runs a fixed schedule with the real runner (`harness.runner.execute_plan`, non-streaming) against
`benchmarks/arrival_server.py` in its own process, which records when each request's last byte reached
it (the truth: same kernel, same monotonic clock). Per request, lateness against the planned time:

  dispatch   sent_ns - planned_ns    stamped before the HTTP stack runs (what was reported before)
  wire       wire_ns - planned_ns    the last byte handed to the socket (what summaries now report)
  server     arrival - planned_ns    the truth

and the offsets the runner's stamps leave: server - wire (what the wire stamp still misses: loopback
delivery and the server's own wake-up) and server - dispatch. p50 / p99 / max of each, in ms, per
run; per transport and rate the medians over --repeats runs, with the p99's range. Prints the table;
writes nothing unless --out is given.

    python benchmarks/wire_lateness.py                      # 100, 500, 1000 req/s, both transports, 3 runs
    python benchmarks/wire_lateness.py --rates 1000 --duration 5 --transports aiohttp --out /tmp/w
    python benchmarks/wire_lateness.py --workers 2          # the runner's --workers 2 (docs/runner.md)
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
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from harness.backends import resolve_target  # noqa: E402
from harness.runfolder import RunFolder  # noqa: E402
from harness.runner import RunOptions, execute_plan  # noqa: E402
from harness.session.provenance import cpu_model  # noqa: E402
from traffic.builder import build_plan  # noqa: E402
from traffic.spec import PlanSpec  # noqa: E402

SERIES = ("dispatch", "wire", "server", "server_minus_wire", "server_minus_dispatch")


def run_point(url: str, rate: float, duration: float, transport: str, workers: int = 1) -> dict[str, Any]:
    n = max(50, int(rate * duration))
    spec = {"prompts": "synthetic", "schedules": [f"fixed:interval={1 / rate!r}"], "n": n, "max_tokens": 1,
            "seed": 1}  # fmt: skip
    plan = build_plan(PlanSpec.parse(spec))
    target = asyncio.run(resolve_target(url))
    options = RunOptions(
        stream=False, transport=transport, warmup=20, progress=False, timeout_s=30, workers=workers
    )
    with tempfile.TemporaryDirectory() as out:
        result = execute_plan(plan, target, RunFolder.create(out, plan), options)
    rows = result.measured
    rows = rows[rows["status"] == "ok"]
    truth = np.array([json.loads(t)["x-request-id"] for t in rows["server_timing"]], dtype=np.int64)
    planned, sent, wire = (rows[c].to_numpy(dtype=np.int64) for c in ("planned_ns", "sent_ns", "wire_ns"))
    series = {
        "dispatch": sent - planned,
        "wire": wire - planned,
        "server": truth - planned,
        "server_minus_wire": truth - wire,
        "server_minus_dispatch": truth - sent,
    }
    return {
        "transport": transport,
        "workers": workers,
        "rate": rate,
        "requests": n,
        "ok": len(rows),
        "wire_before_server": bool((wire <= truth).all()),
        "ms": {k: _spread(v / 1e6) for k, v in series.items()},
        "client_cpu_share": result.client_cpu_s / max((result.end_ns - result.start_ns) / 1e9, 1e-9),
    }


def _spread(ms: np.ndarray) -> dict[str, float]:
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}


def medians(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (transport, rate): each series' p50 / p99 / max as the median over the runs, the p99's range
    (min, max) over them, whether every request succeeded, and in how many runs every wire stamp came
    before the server's arrival (httpcore's trace reports a write once it has completed, a loop turn
    later, so with `--transport httpx` a fast server can have the request first)."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault((p["transport"], p["rate"]), []).append(p)
    out = []
    for (transport, rate), runs in groups.items():
        ms = {
            s: {q: float(statistics.median(r["ms"][s][q] for r in runs)) for q in ("p50", "p99", "max")}
            for s in SERIES
        }
        p99s = {s: [r["ms"][s]["p99"] for r in runs] for s in SERIES}
        p99_range = {s: [min(v), max(v)] for s, v in p99s.items()}
        ok = all(r["ok"] == r["requests"] for r in runs)
        wire_first = sum(r["wire_before_server"] for r in runs)
        out.append({"transport": transport, "rate": rate, "runs": len(runs), "all_ok": ok,
                    "wire_first_runs": wire_first, "ms": ms, "p99_range": p99_range})  # fmt: skip
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """Medians over the runs: p50 / p99 of each series, the p99's (min–max) over the runs."""
    lines = [
        "| transport | rate | runs | lateness p50 / p99 (min–max), ms: dispatch | wire | server (truth) "
        "| left: server - wire | server - dispatch | runs with every wire stamp first |",
        "|---|---:|---:|---|---|---|---|---|---:|",
    ]
    for r in rows:
        cells = [
            f"{r['ms'][s]['p50']:.2f} / {r['ms'][s]['p99']:.2f} "
            f"({r['p99_range'][s][0]:.2f}–{r['p99_range'][s][1]:.2f})"
            for s in SERIES
        ]
        cells.append(f"{r['wire_first_runs']} of {r['runs']}")
        lines.append(f"| {r['transport']} | {r['rate']:g} | {r['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="100,500,1000", help="req/s, comma-separated")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per point")
    parser.add_argument("--transports", default="aiohttp,httpx")
    parser.add_argument("--workers", type=int, default=1, help="the runner's --workers")
    parser.add_argument("--repeats", type=int, default=3, help="runs per (transport, rate)")
    parser.add_argument("--out", type=Path, help="write wire_lateness.json and .md here")
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "arrival_server.py")], stdout=subprocess.PIPE, text=True
    )
    points = []
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        for _ in range(args.repeats):  # repeats outermost: a busy spell of the machine hits every variant
            for rate in (float(r) for r in args.rates.split(",")):
                for transport in args.transports.split(","):
                    points.append(run_point(url, rate, args.duration, transport, args.workers))
                    print(json.dumps(points[-1]), file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    rows = medians(points)
    result = {
        "machine": {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "command": " ".join(["python", "benchmarks/wire_lateness.py", *sys.argv[1:]]),
        "date_utc": time.strftime("%Y-%m-%d", time.gmtime()),
        "medians": rows,
        "points": points,
    }
    text = table(rows)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "wire_lateness.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "wire_lateness.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
