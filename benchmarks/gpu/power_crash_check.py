#!/usr/bin/env python3
"""The parts of benchmarks/gpu/power_crash.sh that are Python (see there):

    poll  --out FILE       NVML's energy counter of GPU 0 every 50 ms (absolute deadlines), one JSON line
                           per reading {"t_ns": monotonic ns, "energy_j"}: the truth, read apart from
                           the sidecar, until SIGTERM
    load  --seconds S      a bf16 matmul loop on GPU 0, 2 s on and 1.5 s off, so power moves
    check --run DIR --truth FILE --out FILE
                           the recovered run's energy (summary.json: the run window's total, and the
                           rebuilt power.parquet over the span it covers) against the truth
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def poll(out: Path) -> None:
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    start, k = time.monotonic_ns(), 0
    with out.open("w") as f:
        while not stopping:
            deadline = start + k * 50_000_000
            delay = (deadline - time.monotonic_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            t0 = time.monotonic_ns()
            mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            t1 = time.monotonic_ns()
            f.write(json.dumps({"t_ns": (t0 + t1) // 2, "energy_j": mj / 1000}) + "\n")
            f.flush()
            k = max(k + 1, (time.monotonic_ns() - start) // 50_000_000)


def load(seconds: float) -> None:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        burst_end = time.monotonic() + 2.0
        while time.monotonic() < burst_end:
            a = torch.nn.functional.normalize(a @ a, dim=1)
        torch.cuda.synchronize()
        time.sleep(1.5)


def check(run: Path, truth_file: Path, out: Path) -> None:
    import numpy as np

    from harness.energy.grid import window_energy
    from harness.runfolder.power_file import load_power

    rows = [json.loads(line) for line in truth_file.read_text().splitlines() if line.strip()]
    t = np.array([r["t_ns"] for r in rows], dtype=np.int64)
    e = np.array([r["energy_j"] for r in rows])
    summary = json.loads((run / "summary.json").read_text())
    window = summary["run"]["window"]
    start, end = int(window["start_ns"]), int(window["end_ns"])
    truth_window = float(np.diff(np.interp([start, end], t, e))[0])
    (series,) = load_power(run).series
    inside = (series.t_ns >= start) & (series.t_ns <= end)
    first, last = int(series.t_ns[inside][0]), int(series.t_ns[inside][-1])
    rebuilt_span = float(series.energy_j[inside][-1] - series.energy_j[inside][0])
    truth_span = float(np.diff(np.interp([first, last], t, e))[0])
    joules, covered_s = window_energy(series, start, end)
    result = {
        "run_window_s": (end - start) / 1e9,
        "power_covered_s": covered_s,
        "summary_energy_j_total": summary["run"]["energy_j_total"],
        "truth_energy_j_window": truth_window,
        "rebuilt_energy_j_span": rebuilt_span,
        "truth_energy_j_span": truth_span,
        "span_difference": (rebuilt_span - truth_span) / truth_span,
        "window_energy_j": joules,
        "flags": sorted({f["code"] for f in summary["flags"]}),
        "records": json.loads((run / "manifest.json").read_text()).get("records"),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("poll").add_argument("--out", type=Path, required=True)
    sub.add_parser("load").add_argument("--seconds", type=float, default=120.0)
    c = sub.add_parser("check")
    c.add_argument("--run", type=Path, required=True)
    c.add_argument("--truth", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.cmd == "poll":
        poll(args.out)
    elif args.cmd == "load":
        load(args.seconds)
    else:
        check(args.run, args.truth, args.out)


if __name__ == "__main__":
    main()
