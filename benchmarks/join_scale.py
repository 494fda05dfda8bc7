"""Join speed and memory at scale: requests × power samples through `harness.energy.analyze`.

Builds a synthetic run (vectorized, seeded): `--requests` requests arriving at random over a span
chosen so that power is sampled every `--sample-ms` ms with `--samples` samples in all; each request
lives 1-10 s and streams `output_tokens / tokens_per_chunk` chunks. Power is idle plus a dynamic draw
per request in flight. Then it times `analyze` for each method and records wall time, the rise of the
resident set during the join over the inputs (peak reset through /proc/self/clear_refs, Linux only)
and the process's peak RSS.

    python benchmarks/join_scale.py                      # the issue's scale: 1e6 requests, 1e7 samples
    python benchmarks/join_scale.py --requests 10000 --samples 100000   # a quick check

Writes benchmarks/results/join_scale_<requests>x<samples>.json (raw figures) and .md (a table).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from harness.energy import AnalysisOptions, ArmWindow, BootstrapSpec, IdleWindows, Window, analyze
from harness.power.series import EnergySeries, PowerData

S = 1_000_000_000
RESULTS = Path(__file__).resolve().parent / "results"


def synthetic_run(requests: int, samples: int, sample_ms: float, tokens_per_chunk: int, seed: int):
    rng = np.random.default_rng(seed)
    dt = int(sample_ms * 1e6)
    span = samples * dt
    idle_s = 0.05 * span / S  # idle windows: the first and last 5% of the sampled span
    run0, run1 = int(idle_s * S), span - int(idle_s * S)
    start = np.sort(rng.integers(run0, run1 - 10 * S, requests))
    life = rng.integers(1 * S, 10 * S, requests)
    end = start + life
    ttft = rng.integers(10_000_000, 200_000_000, requests)
    first = start + ttft
    out_tok = rng.integers(16, 257, requests)
    chunks = np.maximum(out_tok // tokens_per_chunk, 1)
    offsets = np.concatenate([[0], np.cumsum(chunks)])
    row = np.repeat(np.arange(requests), chunks)
    pos = np.arange(offsets[-1]) - offsets[row]
    frac = pos / np.maximum(chunks[row] - 1, 1)
    chunk_ns = first[row] + (frac * (end[row] - 1 - first[row])).astype(np.int64)
    chunk_col = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(chunk_ns))
    df = pd.DataFrame(
        {
            "request_id": np.arange(requests),
            "arm": pd.array(np.where(np.arange(requests) < requests // 2, "a", "b"), dtype="string"),
            "warmup": False,
            "status": pd.array(["ok"] * requests, dtype="string"),
            "stream": True,
            "planned_ns": pd.array(start, dtype="Int64"),
            "sent_ns": pd.array(start, dtype="Int64"),
            "first_token_ns": pd.array(first, dtype="Int64"),
            "last_token_ns": pd.array(chunk_ns[offsets[1:] - 1], dtype="Int64"),
            "done_ns": pd.array(end, dtype="Int64"),
            "lateness_ns": pd.array(np.zeros(requests, dtype=np.int64), dtype="Int64"),
            "chunk_ns": pd.Series(chunk_col, dtype=pd.ArrowDtype(chunk_col.type)),
            "chunks": chunks,
            "prompt_tokens": pd.array(rng.integers(32, 1024, requests), dtype="Int64"),
            "output_tokens": pd.array(out_tok, dtype="Int64"),
        }
    )
    # Power: idle + 2 W per request in flight, integrated exactly over each sample interval.
    t = np.arange(samples + 1, dtype=np.int64) * dt
    events = np.concatenate([start, end])
    sign = np.concatenate([np.ones(requests), -np.ones(requests)])
    order = np.argsort(events, kind="stable")
    ev_t, ev_n = events[order], np.cumsum(sign[order])
    # In-flight-seconds up to each sample time, by integrating the step function n(t).
    area = np.concatenate([[0.0], np.cumsum(ev_n[:-1] * np.diff(ev_t) / S)])
    idx = np.searchsorted(ev_t, t, side="right") - 1
    busy = np.where(
        idx >= 0, area[np.maximum(idx, 0)] + ev_n[np.maximum(idx, 0)] * (t - ev_t[np.maximum(idx, 0)]) / S, 0
    )
    energy = 120.0 * t / S + 2.0 * busy
    power = PowerData([EnergySeries("0", t, energy)], source="synthetic")
    half = start[requests // 2]
    arms = [ArmWindow("a", run0, int(half)), ArmWindow("b", int(half), run1)]
    idle = IdleWindows(pre=Window(0, run0), post=Window(run1, span))
    return df, power, arms, idle


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise KeyError(key)


def measure(df, power, arms, idle, method: str) -> dict:
    """Wall time and the join's peak memory: the rise of the process's resident set over what the
    inputs already hold (Linux: the peak is reset through /proc/self/clear_refs, so no tracer slows
    the join down)."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    base_kb = _status_kb("VmRSS")
    t0 = time.perf_counter()
    options = AnalysisOptions(bootstrap=BootstrapSpec(seed=0))
    analysis = analyze(df, power, arms=arms, idle=idle, method=method, options=options)
    wall = time.perf_counter() - t0
    peak = (_status_kb("VmHWM") - base_kb) * 1024
    cons = analysis.summary["conservation"]
    return {
        "method": method,
        "wall_s": wall,
        "join_peak_bytes": peak,
        "total_j": cons["total_j"],
        "residual_j": cons["residual_j"],
        "relative_residual": abs(cons["residual_j"]) / cons["total_j"],
        "j_per_request_mean": analysis.summary["run"]["j_per_request"]["mean"],
        "inputs_rss_bytes": base_kb * 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--sample-ms", type=float, default=10.0, help="power sample interval (default 10 ms)")
    ap.add_argument("--tokens-per-chunk", type=int, default=1, help="output tokens per streamed chunk")
    ap.add_argument("--methods", default="time,tokens")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    t0 = time.perf_counter()
    df, power, arms, idle = synthetic_run(
        args.requests, args.samples, args.sample_ms, args.tokens_per_chunk, args.seed
    )
    build_s = time.perf_counter() - t0
    chunks = int(df["chunks"].sum())
    runs = [measure(df, power, arms, idle, m) for m in args.methods.split(",")]
    result = {
        "benchmark": "join_scale",
        "requests": args.requests,
        "samples": args.samples,
        "sample_ms": args.sample_ms,
        "chunks": chunks,
        "tokens_per_chunk": args.tokens_per_chunk,
        "seed": args.seed,
        "build_s": build_s,
        "process_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()},
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"join_scale_{args.requests}x{args.samples}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# join_scale: {args.requests:,} requests × {args.samples:,} power samples ({chunks:,} chunks)",
        "",
        f"`python benchmarks/join_scale.py --requests {args.requests} --samples {args.samples} "
        f"--tokens-per-chunk {args.tokens_per_chunk}` on {os.cpu_count()} CPUs",
        "",
        "| method | wall s | join peak GB (over inputs) | relative conservation residual |",
        "|---|---|---|---|",
    ]
    for r in runs:
        peak = r["join_peak_bytes"] / 1e9
        lines.append(f"| {r['method']} | {r['wall_s']:.1f} | {peak:.2f} | {r['relative_residual']:.1e} |")
    lines += ["", f"Process peak RSS (inputs included): {result['process_peak_rss_bytes'] / 1e9:.2f} GB", ""]
    (args.out / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
