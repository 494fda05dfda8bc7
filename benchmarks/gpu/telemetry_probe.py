#!/usr/bin/env python3
"""The real NVML path of the sidecar's telemetry (issue 16), on the GPU machine: a sidecar on NVML writing
its sample log while the GPU idles, runs a matrix-multiply load, and idles again; then what the log holds.

    python3 benchmarks/gpu/telemetry_probe.py --log OUT/samples.jsonl [--idle 3] [--load 4]

Prints the log header's telemetry keys (state columns, RAPL domains or why none, phase jitter), and per
phase (idle, load, idle after) the state rows' SM and memory clocks, temperature, power limit and
throttle reasons, and the power rows' range. Needs torch with CUDA for the load (the GPU image has it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections import Counter
from pathlib import Path

from harness.energy.throttle import reason_names
from harness.power.nvml import NvmlBackend
from harness.power.sidecar_server import Sidecar


def load(seconds: float) -> None:
    import torch

    a = torch.randn(8192, 8192, device="cuda")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        a @ a
        torch.cuda.synchronize()


def phases(log: Path, marks: list[tuple[str, int]]) -> None:
    with log.open() as f:
        header = json.loads(f.readline())
        rows = [json.loads(line) for line in f]
    keys = ("state_columns", "state_interval_s", "host_energy", "phase_jitter", "schema_version")
    print("header:", json.dumps({k: header.get(k) for k in keys}))
    state_at = {name: i for i, name in enumerate(header.get("state_columns") or [])}
    bounds = [*marks, ("end", 2**63)]
    for (name, start), (_, end) in itertools.pairwise(bounds):
        mine = [r for r in rows if start <= r[1] < end]
        power = [r[4] for r in mine if r[3] == "p" and r[4] is not None]
        state = [r[8:] for r in mine if r[3] == "s"]
        reasons = Counter(n for s in state for n in reason_names(int(s[state_at["throttle_reasons"]] or 0)))
        print(f"{name}: {len(power)} power rows ({min(power, default=0):.0f}-{max(power, default=0):.0f} W), "
              f"{len(state)} state rows", end="")  # fmt: skip
        for column in ("sm_clock_hz", "mem_clock_hz", "temperature_c", "power_limit_w"):
            values = [s[state_at[column]] for s in state if s[state_at[column]] is not None]
            print(f"; {column} {min(values, default=None)}-{max(values, default=None)}", end="")
        print(f"; reasons {dict(reasons)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--idle", type=float, default=3.0)
    ap.add_argument("--load", type=float, default=4.0)
    args = ap.parse_args()
    car = Sidecar(NvmlBackend(None), host="127.0.0.1", port=0, interval_s=0.1, log_path=args.log)
    car.start()
    try:
        marks = [("idle", time.monotonic_ns())]
        time.sleep(args.idle)
        marks.append(("load", time.monotonic_ns()))
        load(args.load)
        marks.append(("idle after", time.monotonic_ns()))
        time.sleep(args.idle)
    finally:
        car.stop()
    phases(args.log, marks)


if __name__ == "__main__":
    main()
