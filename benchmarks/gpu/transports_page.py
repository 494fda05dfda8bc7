#!/usr/bin/env python3
"""The transports compared on a real engine: `experiment.sh transports`' run folders, one table.

`experiment.sh transports` runs one fixed-rate plan (the same prompts, seed and rate) with
`--transport aiohttp` and `--transport sender`, alternating which goes first, into DIR/aiohttp/ and
DIR/sender/. The k-th run of each (by start) is repeat k. Per run, from its requests.parquet (the
rows) and summary.json (what `joulebench report` shows):

  rows           measured rows in the log, and whether each planned request is there exactly once
  wire ms        lateness where the request met the socket (wire_ns - planned): p50 / p99 / max,
                 over the requests that reached it (the others are counted, never a NaN figure)
  to wire ms     dispatch stamp to wire stamp, p50: the HTTP stack's part of the lateness
  realized       the rate the sends achieved over the planned rate (1.0: the plan's rate)
  TTFT s         time to first token, p50 / p99, from the wire stamp
  J/request      the run's mean energy per request (the join's `time` split)

and per transport the median over the repeats with its (min–max). No server-side arrival stamps
exist here (a real engine does not keep them): the lateness is the client's wire stamp, which the
arrival-server benchmark (benchmarks/worker_lateness.py) checks against a server's own clock.

    python benchmarks/gpu/transports_page.py DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TRANSPORTS = ("aiohttp", "sender")


def run_figures(folder: Path) -> dict[str, Any]:
    """One run's figures; a folder they cannot be read from stops the page with one line naming it."""
    try:
        return _figures(folder)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:  # pyarrow's errors are ValueErrors
        raise SystemExit(f"{folder}: cannot read this run's figures ({type(exc).__name__}: {exc})") from None


def _figures(folder: Path) -> dict[str, Any]:
    summary = json.loads((folder / "summary.json").read_text())["run"]
    manifest = json.loads((folder / "manifest.json").read_text())
    rows = pd.read_parquet(folder / "requests.parquet")
    rows = rows[~rows["warmup"]]
    planned = int(manifest["plan"]["n"])
    ids = rows["request_id"].to_numpy()
    ok = rows[rows["status"] == "ok"]
    wired = rows[rows["wire_ns"].notna()]
    if wired["status"].ne("ok").all():
        raise ValueError("no request reached the wire and came back ok")
    wire = (wired["wire_ns"] - wired["planned_ns"]).to_numpy(dtype=np.float64) / 1e6
    to_wire = (wired["wire_ns"] - wired["sent_ns"]).to_numpy(dtype=np.float64) / 1e6
    ttft = (ok["first_token_ns"] - ok["wire_ns"]).dropna().to_numpy(dtype=np.float64) / 1e9
    return {
        "transport": manifest["options"]["transport"],
        "run_id": manifest["run_id"],
        "rows": len(rows),
        "once": sorted(ids.tolist()) == list(range(planned)),
        "ok": len(ok),
        "not_wired": len(rows) - len(wired),
        "wire_p50": float(np.percentile(wire, 50)),
        "wire_p99": float(np.percentile(wire, 99)),
        "wire_max": float(wire.max()),
        "to_wire_p50": float(np.percentile(to_wire, 50)),
        "realized": float(summary["rate"]["realized_over_planned"]),
        "ttft_p50": float(np.percentile(ttft, 50)),
        "ttft_p99": float(np.percentile(ttft, 99)),
        "in_flight_max": int(summary["client"]["in_flight_max"]),
        "j_per_request": float(summary["j_per_request"]["mean"]),
    }


def runs(root: Path) -> dict[str, list[dict[str, Any]]]:
    """Each transport's runs in the order they ran (run ids begin with their UTC start)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for transport in TRANSPORTS:
        if not (root / transport).is_dir():
            raise SystemExit(f"{root / transport}: not a folder (experiment.sh transports makes it)")
        folders = sorted(
            p for p in (root / transport).iterdir() if not p.is_symlink() and (p / "summary.json").is_file()
        )  # `latest` is a link to one of them
        out[transport] = [run_figures(p) for p in folders]
        if not out[transport]:
            raise SystemExit(f"{root / transport}: no run folders")
        wrong = [r["run_id"] for r in out[transport] if r["transport"] != transport]
        if wrong:
            raise SystemExit(f"{root / transport}: runs {wrong} were not made with --transport {transport}")
    return out


def _once(r: dict[str, Any]) -> str:
    once = "yes" if r["once"] else "NO"
    return (
        f"{once} ({r['not_wired']} never on the wire, left out of its lateness)" if r["not_wired"] else once
    )


def _median_range(values: list[float], fmt: str) -> str:
    return f"{np.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


REPEAT_HEAD = (
    "| repeat | transport | rows, each once | ok | wire ms p50 / p99 / max | to wire ms p50 "
    "| realized / planned | TTFT s p50 / p99 | in flight max | J/request |"
)
# Per transport over the repeats: (column, figure, format)
SPREADS = [
    ("wire ms p50", "wire_p50", ".2f"),
    ("wire ms p99", "wire_p99", ".2f"),
    ("wire ms max", "wire_max", ".2f"),
    ("realized / planned", "realized", ".4f"),
    ("TTFT s p50", "ttft_p50", ".3f"),
    ("J/request", "j_per_request", ".3f"),
]


def table(by_transport: dict[str, list[dict[str, Any]]]) -> str:
    lines = [REPEAT_HEAD, "|---:|---|---|---:|---|---:|---:|---|---:|---:|"]
    repeats = max(len(v) for v in by_transport.values())
    for k in range(repeats):
        for transport in TRANSPORTS:
            if k >= len(by_transport[transport]):
                continue
            r = by_transport[transport][k]
            lines.append(
                f"| {k + 1} | {transport} | {r['rows']}, {_once(r)} | {r['ok']} | "
                f"{r['wire_p50']:.2f} / {r['wire_p99']:.2f} / {r['wire_max']:.2f} | {r['to_wire_p50']:.3f} | "
                f"{r['realized']:.4f} | {r['ttft_p50']:.3f} / {r['ttft_p99']:.3f} | {r['in_flight_max']} | "
                f"{r['j_per_request']:.3f} |"
            )
    lines += ["", "| transport | runs | " + " | ".join(c for c, _, _ in SPREADS) + " |"]
    lines.append("|---|---:|" + "---|" * len(SPREADS))
    for transport in TRANSPORTS:
        rs = by_transport[transport]
        cells = [_median_range([r[key] for r in rs], fmt) for _, key, fmt in SPREADS]
        lines.append(f"| {transport} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="experiment.sh's transports/ folder: aiohttp/ and sender/")
    args = parser.parse_args(argv)
    print(table(runs(args.dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
