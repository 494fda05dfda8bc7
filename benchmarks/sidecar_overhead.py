"""What the power sidecar costs and how well it keeps its cadence, as a whole process, while it is used.

Starts `joulebench sidecar` as a subprocess at each sampling interval (10 Hz and 100 Hz by default)
and, for `--seconds`, scrapes /metrics once a second (as Prometheus does) and polls /samples every
2 s (as `joulebench run` does). From the sidecar's own metrics it reports, per interval:
- CPU: process CPU seconds (user + system, `process_cpu_seconds_total`) per wall second;
- cadence: power samples taken vs expected, deadlines missed, lag quantiles (histogram bounds);
- serving: /metrics and /samples response times, sample rows per second.

    python benchmarks/sidecar_overhead.py                      # simulated GPU: starts a mock server
    python benchmarks/sidecar_overhead.py --backend nvml       # on a GPU machine: the real NVML path

With the simulated backend every read is an HTTP request to the mock, so its CPU figures are those of
the no-GPU chain, not of NVML; benchmarks/gpu/nvml_check.py measures the sampler on NVML alone.
Writes to --out (default benchmarks/results/) sidecar_overhead_<backend>.json (raw snapshots and
per-interval figures) and sidecar_overhead_<backend>.md (a table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the package first: tests/harness must not shadow it

from joulebench_testkit import free_port, joulebench_server, run_mock_server  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$")


def metrics(text: str) -> dict[str, float]:
    """{'name{labels}': value} for every sample line."""
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def lag_quantiles(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """Quantiles of the power loop's lag over the run, as histogram bucket upper bounds (ms)."""
    buckets = []
    for key, value in after.items():
        m = re.match(r'joulebench_sampler_lag_seconds_bucket\{le="([^"]+)",loop="power"\}', key)
        if m:
            buckets.append((float(m.group(1)), value - before.get(key, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    out: dict[str, float | None] = {}
    for q in (0.5, 0.9, 0.99):
        bound = next((le for le, count in buckets if total and count >= q * total), None)
        out[f"p{round(q * 100)}_le_ms"] = None if bound is None else bound * 1e3
    return out


def run_interval(backend_args: list[str], interval: float, seconds: float, logs: Path) -> dict[str, Any]:
    port = free_port()
    args = ["sidecar", *backend_args, "--host", "127.0.0.1", "--port", str(port), "--interval", str(interval)]
    with joulebench_server(args, port, "/healthz", log_dir=logs) as sidecar:
        url = sidecar.url
        time.sleep(2.0)  # past start-up (imports, first readings)
        client = httpx.Client(timeout=10.0)
        first_text = client.get(url + "/metrics").text
        t0 = time.monotonic()
        # A cursor past the end answers with the present one: start polling from now. state=1: every
        # row kind, as the harness polls.
        cursor = client.get(url + "/samples", params={"since": 10**12, "state": 1}).json()["next"]
        scrapes_ms, polls_ms, rows, snapshots = [], [], 0, []
        next_scrape, next_poll = t0 + 1.0, t0 + 2.0
        while (now := time.monotonic()) < t0 + seconds:
            time.sleep(max(0.0, min(next_scrape, next_poll) - now))
            if time.monotonic() >= next_scrape:
                s = time.perf_counter()
                text = client.get(url + "/metrics").text
                scrapes_ms.append((time.perf_counter() - s) * 1e3)
                snapshots.append({"t_s": round(time.monotonic() - t0, 3), "metrics": metrics(text)})
                next_scrape += 1.0
            if time.monotonic() >= next_poll:
                s = time.perf_counter()
                doc = client.get(url + "/samples", params={"since": cursor, "state": 1}).json()
                polls_ms.append((time.perf_counter() - s) * 1e3)
                rows += len(doc["rows"])
                cursor = doc["next"]
                next_poll += 2.0
        last_text = client.get(url + "/metrics").text
        wall = time.monotonic() - t0
        client.close()
    a, b = metrics(first_text), metrics(last_text)

    def delta(key: str) -> float:
        return b.get(key, 0.0) - a.get(key, 0.0)

    samples = delta('joulebench_sampler_samples_total{loop="power"}')
    return {
        "interval_s": interval,
        "wall_s": round(wall, 3),
        "cpu_pct_of_one_core": round(100 * delta("process_cpu_seconds_total") / wall, 2),
        "power_samples": samples,
        "expected_samples": round(wall / interval),
        "missed": delta('joulebench_sampler_missed_total{loop="power"}'),
        "lag_mean_ms": round(delta('joulebench_sampler_lag_seconds_sum{loop="power"}') / samples * 1e3, 3)
        if samples
        else None,
        "lag": lag_quantiles(a, b),
        "counter_readings": delta('joulebench_sampler_samples_total{loop="counter"}'),
        "read_errors": sum(delta(k) for k in b if k.startswith("joulebench_gpu_read_errors_total")),
        "rss_mb": round(b.get("process_resident_memory_bytes", 0) / 2**20, 1),
        "metrics_ms": {"median": round(float(np.median(scrapes_ms)), 2), "max": round(max(scrapes_ms), 2)},
        "samples_poll_ms": {"median": round(float(np.median(polls_ms)), 2), "max": round(max(polls_ms), 2)},
        "sample_rows_per_s": round(rows / wall, 1),
        "snapshots": snapshots,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["simulated", "nvml"], default="simulated")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds per interval")
    ap.add_argument("--intervals", default="0.1,0.01", help="sampling intervals to measure (s)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    args = ap.parse_args()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        logs = Path(tmp)
        backend_args = ["--backend", "nvml"]
        if args.backend == "simulated":
            mock = stack.enter_context(run_mock_server(log_dir=logs))
            backend_args = ["--backend", "simulated", "--simulate-from", mock.url]
        runs = [run_interval(backend_args, float(i), args.seconds, logs) for i in args.intervals.split(",")]
    result = {
        "command": " ".join(["python", *sys.argv]),
        "started": started,
        "backend": args.backend,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_1m_before": round(load_before[0], 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
        },
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"sidecar_overhead_{args.backend}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"# Sidecar overhead ({args.backend} backend), {started}",
        "",
        f"`{result['command']}` on {result['machine']['cpus']} CPUs, load average "
        f"{result['machine']['loadavg_1m_before']} before / {result['machine']['loadavg_1m_after']} after "
        "(other processes share the machine: compare ratios, not absolute figures, across machines).",
        "",
        "| interval | CPU % of one core | samples / expected | missed | lag mean ms | lag p50 / p99 ≤ ms "
        "| /metrics ms (median) | /samples poll ms (median) | rows/s | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['interval_s']} s | {r['cpu_pct_of_one_core']} | {r['power_samples']:.0f} / "
            f"{r['expected_samples']} | {r['missed']:.0f} | {r['lag_mean_ms']} | "
            f"{r['lag']['p50_le_ms']} / {r['lag']['p99_le_ms']}"
            f" | {r['metrics_ms']['median']} | {r['samples_poll_ms']['median']} | {r['sample_rows_per_s']}"
            f" | {r['rss_mb']} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
