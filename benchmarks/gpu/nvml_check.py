#!/usr/bin/env python3
"""Check the sidecar's NVML sampling on a real GPU machine, idle and under load, and record the numbers.

Runs the sidecar's own code (harness.power: NvmlBackend, Sampler, exposition) on NVML:
1. `idle` and `load` phases (`--seconds` each; load = a bf16 matmul loop per GPU, in a subprocess):
   power read at 100 Hz and the energy counter every 20 ms, to measure
   - how often the counter and the instant / average power readings actually change,
   - how counter deltas compare with integrated instant power over 1 s, 5 s and 30 s windows,
   - the latency of each NVML read the sidecar makes (wrapped around the backend, per call);
2. `cpu` phases: the sidecar's sampler as it ships (counter every 0.5 s) at 10 Hz and at 100 Hz,
   its process CPU time / wall time, lag and missed deadlines; plus the cost of one /metrics render.

Needs only this repository, numpy, nvidia-ml-py (pynvml) and prometheus_client; torch for the load.
Read-only: no clock, limit or mode is changed. Writes to --out:
  nvml_check.json          every number, with the machine (GPU, driver, library versions)
  nvml_check.md            the tables for docs/power.md
  nvml_check_samples.jsonl the raw samples of the idle and load phases (sample-log format, one
                           session per phase; harness.power.samplelog.read_log_file reads it)

Usage (repository root):  python3 benchmarks/gpu/nvml_check.py --out "$OUT" [--seconds 30] [--gpus all]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pynvml  # noqa: E402

from harness.clock import ClockAnchor  # noqa: E402
from harness.power.exposition import make_registry, render  # noqa: E402
from harness.power.gpu_backend import GpuIdentity, parse_gpus  # noqa: E402
from harness.power.nvml import NvmlBackend  # noqa: E402
from harness.power.samplelog import ENERGY_ROW, POWER_ROW, SampleRing, SampleRows  # noqa: E402
from harness.power.sampler import LAG_BUCKETS, LoopStats, Sampler, SamplerConfig  # noqa: E402
from harness.power.sidecar_server import log_header  # noqa: E402

LOAD_CODE = r"""
import sys, time, torch
gpu, seconds = int(sys.argv[1]), float(sys.argv[2])
torch.cuda.set_device(gpu)
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
for _ in range(20):
    c = a @ b
torch.cuda.synchronize()
print("READY", flush=True)
end, n = time.monotonic() + seconds, 0
while time.monotonic() < end:
    for _ in range(10):
        c = a @ b
    torch.cuda.synchronize()
    n += 10
print("MATMULS", n, flush=True)
"""
WINDOWS_S = (1.0, 5.0, 30.0)


class TimedBackend:
    """The NVML backend with every call's duration recorded (per method), for the latency table."""

    def __init__(self, backend: NvmlBackend) -> None:
        self.inner = backend
        self.name = backend.name
        self.calls: dict[str, list[int]] = {"read_power": [], "read_energy": [], "read_state": []}

    def devices(self) -> list[GpuIdentity]:
        return self.inner.devices()

    def _timed(self, method: str, index: int) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return getattr(self.inner, method)(index)
        finally:
            self.calls[method].append(time.perf_counter_ns() - t0)

    def read_power(self, index: int) -> Any:
        return self._timed("read_power", index)

    def read_energy(self, index: int) -> Any:
        return self._timed("read_energy", index)

    def read_state(self, index: int) -> Any:
        return self._timed("read_state", index)

    def close(self) -> None:
        self.inner.close()


def quantiles(values: list[float] | np.ndarray, scale: float = 1.0) -> dict[str, float | int | None]:
    v = np.asarray(values, dtype=float) * scale
    if not len(v):
        return {"n": 0, "median": None, "p10": None, "p90": None, "p99": None, "max": None}
    q = np.percentile(v, [10, 50, 90, 99])
    return {
        "n": len(v),
        "median": round(q[1], 3),
        "p10": round(q[0], 3),
        "p90": round(q[2], 3),
        "p99": round(q[3], 3),
        "max": round(float(v.max()), 3),
    }


def loop_summary(stats: LoopStats, wall_s: float) -> dict[str, Any]:
    """Samples, missed deadlines and the lag histogram's quantiles (upper bucket bounds)."""
    total = sum(stats.lag_buckets)
    cumulative = np.cumsum(stats.lag_buckets)

    def bound(q: float) -> float | None:
        if not total:
            return None
        i = int(np.searchsorted(cumulative, q * total))
        return LAG_BUCKETS[i] if i < len(LAG_BUCKETS) else float("inf")

    return {
        "period_s": stats.period_s,
        "samples": stats.samples,
        "missed": stats.missed,
        "expected": round(wall_s / stats.period_s),
        "lag_mean_ms": round(stats.lag_sum_s / stats.samples * 1e3, 3) if stats.samples else None,
        "lag_p50_le_ms": None if bound(0.5) is None else bound(0.5) * 1e3,
        "lag_p99_le_ms": None if bound(0.99) is None else bound(0.99) * 1e3,
    }


def change_periods_ms(t_ns: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    """How often a reading actually changes: spacing of the times at which its value differs."""
    changed = t_ns[1:][np.diff(values) != 0]
    return quantiles(np.diff(changed), 1e-6) | {"changes": len(changed)}


def agreement(e_t: np.ndarray, e_j: np.ndarray, p_t: np.ndarray, p_w: np.ndarray) -> dict[str, Any]:
    """Counter delta / integral of power, over consecutive windows of 1, 5 and 30 s."""
    out: dict[str, Any] = {}
    if len(e_t) < 2 or len(p_t) < 2:
        return out
    t_lo, t_hi = max(e_t[0], p_t[0]), min(e_t[-1], p_t[-1])
    for w in WINDOWS_S:
        edges = np.arange(t_lo, t_hi + 1, int(w * 1e9))
        if len(edges) < 2:
            # A phase shorter than the window: use the whole overlap once, and say so.
            edges = np.array([t_lo, t_hi]) if (t_hi - t_lo) > 0.9 * w * 1e9 else edges
        ratios = []
        for a, b in itertools.pairwise(edges):
            counter = np.interp(b, e_t, e_j) - np.interp(a, e_t, e_j)
            grid = np.union1d(p_t[(p_t > a) & (p_t < b)], [a, b])
            integral = np.trapezoid(np.interp(grid, p_t, p_w), grid / 1e9)
            if integral > 0:
                ratios.append(counter / integral)
        r = np.asarray(ratios)
        out[f"{w:g}s"] = quantiles(r) | (
            {"mean_abs_error_pct": round(float(np.mean(np.abs(r - 1)) * 100), 3)} if len(r) else {}
        )
    return out


def start_load(gpus: list[int], seconds: float) -> tuple[list[subprocess.Popen], str | None]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD_CODE, str(g), str(seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for g in gpus
    ]
    for proc in procs:
        line = proc.stdout.readline().strip() if proc.stdout else ""
        if line != "READY":
            rest = proc.stdout.read() if proc.stdout else ""
            for p in procs:
                p.kill()
            return [], f"load did not start: {(line + ' ' + rest).strip()[-500:]}"
    return procs, None


def run_sampler(backend: Any, config: SamplerConfig, seconds: float) -> tuple[Sampler, SampleRing, dict]:
    ring = SampleRing(1 << 20)
    sampler = Sampler(backend, ring, config)
    cpu0, wall0 = os.times(), time.monotonic()
    sampler.start()
    time.sleep(seconds)
    sampler.stop()
    cpu1, wall1 = os.times(), time.monotonic()
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return sampler, ring, {"wall_s": round(wall1 - wall0, 3), "cpu_s": round(cpu_s, 3)}


def measure_phase(name: str, backend: NvmlBackend, seconds: float, log: Any) -> dict[str, Any]:
    timed = TimedBackend(backend)
    config = SamplerConfig(interval_s=0.01, counter_interval_s=0.02, state_interval_s=1.0)
    anchor = ClockAnchor.now()
    sampler, ring, cost = run_sampler(timed, config, seconds)
    rows, *_ = ring.since(0)
    log.write(json.dumps(log_header(backend, config, anchor) | {"phase": name}) + "\n")
    log.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in rows.to_lists())
    result: dict[str, Any] = {
        "cost": cost,
        "loops": {k: loop_summary(v, cost["wall_s"]) for k, v in sampler.loops().items()},
        "latency_us": {m: quantiles(v, 1e-3) for m, v in timed.calls.items()},
        "gpus": {},
    }
    for status in sampler.gpus():
        result["gpus"][str(status.identity.index)] = analyse_gpu(rows, status.identity) | {
            "read_errors": status.errors,
            "state": vars(status.state),
        }
    return result


def analyse_gpu(rows: SampleRows, gpu: GpuIdentity) -> dict[str, Any]:
    index = gpu.index
    p = (rows.gpu == index) & (rows.kind == POWER_ROW)
    e = (rows.gpu == index) & (rows.kind == ENERGY_ROW)
    p_t, p_w, p_avg = rows.t_ns[p], rows.power_w[p], rows.power_avg_w[p]
    order = np.argsort(rows.t_ns[e])
    e_t, e_j = rows.t_ns[e][order], rows.energy_j[e][order]
    out: dict[str, Any] = {
        "energy_method": "counter" if gpu.has_counter else "integrated",
        "instant_power": gpu.instant_power,
        "power_samples": int(p.sum()),
        "counter_readings": int(e.sum()),
        "update_period_ms": {"power_instant": change_periods_ms(p_t, p_w)},
        "mean_power_w": {"instant": round(float(np.mean(p_w)), 3) if len(p_w) else None},
        "counter_over_integrated": {},
    }
    ok = np.isfinite(p_avg)
    if ok.any():
        out["update_period_ms"]["power_average"] = change_periods_ms(p_t[ok], p_avg[ok])
        out["mean_power_w"]["average"] = round(float(np.mean(p_avg[ok])), 3)
    if not gpu.has_counter:
        return out  # its "energy" is the integral of instant power itself: nothing to compare
    out["update_period_ms"]["energy_counter"] = change_periods_ms(e_t, e_j)
    if len(e_t) >= 2:
        out["mean_power_w"]["counter"] = round(float((e_j[-1] - e_j[0]) / ((e_t[-1] - e_t[0]) / 1e9)), 3)
    out["counter_over_integrated"]["instant"] = agreement(e_t, e_j, p_t, p_w)
    if ok.any():
        out["counter_over_integrated"]["average"] = agreement(e_t, e_j, p_t[ok], p_avg[ok])
    return out


def cpu_phase(backend: NvmlBackend, interval_s: float, seconds: float) -> dict[str, Any]:
    """The sampler as it ships (counter every 0.5 s, state every 1 s) with the main thread asleep."""
    sampler, _, cost = run_sampler(backend, SamplerConfig(interval_s=interval_s), seconds)
    registry = make_registry(sampler, ClockAnchor.now(), backend.name)
    renders = []
    for _ in range(50):
        t0 = time.perf_counter_ns()
        render(registry)
        renders.append(time.perf_counter_ns() - t0)
    return {
        "interval_s": interval_s,
        **cost,
        "cpu_pct_of_one_core": round(100 * cost["cpu_s"] / cost["wall_s"], 3),
        "loops": {k: loop_summary(v, cost["wall_s"]) for k, v in sampler.loops().items()},
        "metrics_render_ms": quantiles(renders, 1e-6),
    }


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"# NVML check — {m.get('gpu_names')} (driver {m.get('driver')}), {res['started']}",
        "",
        f"Command: `{res['command']}`",
        "",
    ]
    if res.get("load_error"):
        lines += [f"**Load phase skipped:** {' '.join(res['load_error'].split())}", ""]
    lines += [
        "## How often readings change (ms between changes: median / p10 / p90)",
        "",
        "| GPU | phase | energy counter | instant power (186) | average power (185) |",
        "|---|---|---|---|---|",
    ]
    for phase in ("idle", "load"):
        for gpu, g in res.get(phase, {}).get("gpus", {}).items():
            u = g["update_period_ms"]

            def cell(d: dict | None) -> str:
                if not d or d.get("median") is None:
                    return "n/a"
                return f"{d['median']} / {d['p10']} / {d['p90']}"

            lines.append(
                f"| {gpu} | {phase} | {cell(u.get('energy_counter'))} | {cell(u['power_instant'])} | "
                f"{cell(u.get('power_average'))} |"
            )
    lines += [
        "",
        "## Counter delta / integrated power (median [p10, p90], mean |error| %, n windows)",
        "",
        "| GPU | phase | power | 1 s | 5 s | 30 s |",
        "|---|---|---|---|---|---|",
    ]
    for phase in ("idle", "load"):
        for gpu, g in res.get(phase, {}).get("gpus", {}).items():
            for kind, windows in g["counter_over_integrated"].items():
                cells = []
                for w in ("1s", "5s", "30s"):
                    d = windows.get(w) or {}
                    cells.append(
                        "n/a"
                        if not d.get("n")
                        else f"{d['median']} [{d['p10']}, {d['p90']}], "
                        f"{d['mean_abs_error_pct']}% (n={d['n']})"
                    )
                lines.append(f"| {gpu} | {phase} | {kind} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## NVML call latency (µs: median / p99 / max)",
        "",
        "| phase | call | median | p99 | max | n |",
        "|---|---|---|---|---|---|",
    ]
    for phase in ("idle", "load"):
        for call, q in res.get(phase, {}).get("latency_us", {}).items():
            lines.append(f"| {phase} | {call} | {q['median']} | {q['p99']} | {q['max']} | {q['n']} |")
    lines += [
        "",
        "## Sidecar CPU cost (sampler as shipped: counter every 0.5 s)",
        "",
        "| power interval | CPU % of one core | power samples / expected | missed | lag mean ms "
        "| lag p99 ≤ ms | /metrics render ms (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in res.get("cpu", []):
        lp = c["loops"]["power"]
        lines.append(
            f"| {c['interval_s']} s | {c['cpu_pct_of_one_core']} | {lp['samples']} / {lp['expected']} | "
            f"{lp['missed']} | {lp['lag_mean_ms']} | {lp['lag_p99_le_ms']} | "
            f"{c['metrics_render_ms']['median']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for the JSON, markdown and raw samples")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the idle and of the load phase")
    ap.add_argument("--cpu-seconds", type=float, default=15.0, help="length of each CPU-cost phase")
    ap.add_argument("--gpus", default="all", help="'all' or indices like 0,2")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        backend = NvmlBackend(parse_gpus(args.gpus))
    except Exception as exc:  # no NVML, bad --gpus: record why, in the same place as the results
        res["error"] = str(exc)
        (args.out / "nvml_check.json").write_text(json.dumps(res, indent=1))
        print(f"nvml_check: {exc}", file=sys.stderr)
        return 2
    gpus = [d.index for d in backend.devices()]
    res["machine"] = {
        "gpus": [vars(d) for d in backend.devices()],
        "gpu_names": sorted({d.name for d in backend.devices()}),
        "driver": backend.devices()[0].driver if gpus else None,
        "pynvml": getattr(pynvml, "__version__", None) or _dist_version("nvidia-ml-py"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "host_cpus": os.cpu_count(),
        "torch": _dist_version("torch"),
    }
    machine = res["machine"]
    print(f"nvml_check: GPUs {gpus} ({machine['gpu_names']}), driver {machine['driver']}", flush=True)
    with (args.out / "nvml_check_samples.jsonl").open("w") as log:
        print(f"nvml_check: idle phase, {args.seconds:g} s", flush=True)
        res["idle"] = measure_phase("idle", backend, args.seconds, log)
        procs, error = start_load(gpus, args.seconds + 4.0)
        if error:
            res["load_error"] = error
        else:
            time.sleep(2.0)  # let power settle after the first kernels
            print(f"nvml_check: load phase, {args.seconds:g} s", flush=True)
            res["load"] = measure_phase("load", backend, args.seconds, log)
            outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
            res["load_process"] = outputs
            try:
                matmuls = sum(int(o.split()[-1]) for o in outputs)
                res["load_tflops"] = round(matmuls * 2 * 8192**3 / (args.seconds + 4.0) / 1e12, 1)
            except (ValueError, IndexError):
                res["load_tflops"] = None
    time.sleep(3.0)  # back to idle before the CPU phases
    res["cpu"] = []
    for interval in (0.1, 0.01):
        print(f"nvml_check: CPU cost at {1 / interval:g} Hz, {args.cpu_seconds:g} s", flush=True)
        res["cpu"].append(cpu_phase(backend, interval, args.cpu_seconds))
    backend.close()
    (args.out / "nvml_check.json").write_text(json.dumps(res, indent=1, default=str))
    table = markdown(res)
    (args.out / "nvml_check.md").write_text(table)
    print(table)
    return 0


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
