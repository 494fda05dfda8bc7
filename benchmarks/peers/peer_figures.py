"""The figures `side_by_side.py` reports, from what the server saw and what /proc said: pure, so the
tests can hold them to hand-made arrivals (tests/benchmarks/test_peers_side_by_side.py).

Lateness, the same for every tool: none of the peers logs when it meant to send each request, so the
intended times are the ideal grid of a fixed-rate run, t0 + i / rate, matched to the server's arrivals
in order. The grid's start t0 is unknown too; it is put as late as the arrivals allow without making
any request early (t0 = min_i(arrival_i - i / rate)), so the least-late request has lateness 0 and
every figure is a lower bound on the true lateness of a tool that never sends early. Anchoring at
the first arrival instead (`anchor="first"`) would let one late first request (a new connection)
make every later one look early; the JSON keeps that variant's p99 for comparison.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

Anchor = Literal["earliest", "first"]
# The figures each run gives and the table shows, with their cells' formats.
METRICS = (
    "realized_rate",
    "lateness_p50_ms",
    "lateness_p99_ms",
    "lateness_max_ms",
    "cpu_ms_per_request",
    "cpu_ms_per_request_total",
)


def grid_lateness_ms(arrivals_ns: Sequence[int], rate: float, anchor: Anchor = "earliest") -> np.ndarray:
    """Each arrival's lateness (ms) against the ideal grid t0 + i / rate, arrivals in time order."""
    arrivals = np.sort(np.asarray(arrivals_ns, dtype=np.int64))
    if arrivals.size == 0:
        return np.zeros(0)
    offsets = arrivals - np.round(np.arange(arrivals.size) * 1e9 / rate).astype(np.int64)
    start = offsets.min() if anchor == "earliest" else offsets[0]
    return np.asarray((offsets - start) / 1e6, dtype=float)


def realized_rate(arrivals_ns: Sequence[int]) -> float:
    """Requests per second between the first and the last arrival: (n - 1) intervals over the span."""
    if len(arrivals_ns) < 2:
        return float("nan")
    span = (max(arrivals_ns) - min(arrivals_ns)) / 1e9
    return (len(arrivals_ns) - 1) / span if span > 0 else float("inf")


def cpu_at(samples: Sequence[tuple[int, float]], t_ns: int) -> float:
    """A process tree's cumulative CPU seconds at t_ns, linear between the (time_ns, cpu_s) samples
    around it (the nearest end outside them)."""
    times = np.array([t for t, _ in samples], dtype=np.float64)
    cpu = np.array([c for _, c in samples], dtype=np.float64)
    return float(np.interp(t_ns, times, cpu))


def run_figures(
    arrivals_ns: Sequence[int], rate: float, cpu_samples: Sequence[tuple[int, float]], cpu_total_s: float
) -> dict[str, Any]:
    """One run's figures: lateness against the grid, realized rate, and the tool's CPU per request,
    both while it sent (first to last arrival: the cost of keeping the schedule) and over its whole
    life (start-up, imports and reports included)."""
    late = grid_lateness_ms(arrivals_ns, rate)
    n = len(arrivals_ns)
    window = (
        cpu_at(cpu_samples, max(arrivals_ns)) - cpu_at(cpu_samples, min(arrivals_ns))
        if n >= 2 and cpu_samples
        else float("nan")
    )
    return {
        "arrived": n,
        "realized_rate": realized_rate(arrivals_ns),
        "lateness_p50_ms": float(np.percentile(late, 50)) if n else float("nan"),
        "lateness_p99_ms": float(np.percentile(late, 99)) if n else float("nan"),
        "lateness_max_ms": float(late.max()) if n else float("nan"),
        "lateness_p99_ms_first_anchor": float(np.percentile(grid_lateness_ms(arrivals_ns, rate, "first"), 99))
        if n
        else float("nan"),
        "cpu_ms_per_request": window * 1e3 / (n - 1) if n >= 2 else float("nan"),
        "cpu_ms_per_request_total": cpu_total_s * 1e3 / n if n else float("nan"),
    }


def summarize(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (tokens, rate, tool): median, min and max of each figure over the runs that worked, the
    failures' reasons, and the medians' ratios to joulebench's (tool / joulebench)."""
    cells: dict[tuple[int, float, str], list[dict[str, Any]]] = {}
    for run in runs:
        cells.setdefault((run["tokens"], run["rate"], run["tool"]), []).append(run)
    rows = []
    for (tokens, rate, tool), group in cells.items():
        good = [r for r in group if not r.get("error")]
        row: dict[str, Any] = {
            "tokens": tokens,
            "rate": rate,
            "tool": tool,
            "runs": len(group),
            "ok_runs": len(good),
            "errors": sorted({r["error"] for r in group if r.get("error")}),
            "requests": group[0]["requests"],
            "arrived": [r["figures"]["arrived"] for r in good],
        }
        for metric in METRICS:
            values = [r["figures"][metric] for r in good]
            row[metric] = (
                {"median": statistics.median(values), "min": min(values), "max": max(values)}
                if values
                else None
            )
        rows.append(row)
    joulebench = {(r["tokens"], r["rate"]): r for r in rows if r["tool"] == "joulebench"}
    for row in rows:
        base = joulebench.get((row["tokens"], row["rate"]))
        row["vs_joulebench"] = {
            metric: _ratio(row[metric], base[metric] if base else None)
            for metric in ("lateness_p99_ms", "cpu_ms_per_request", "cpu_ms_per_request_total")
        }
    return rows


def _ratio(value: dict[str, float] | None, base: dict[str, float] | None) -> float | None:
    if not value or not base or not base["median"] > 0:
        return None
    return value["median"] / base["median"]


def _spread(cell: dict[str, float] | None, digits: int) -> str:
    if cell is None:
        return "–"
    if cell["min"] == cell["max"]:
        return f"{cell['median']:.{digits}f}"
    return f"{cell['median']:.{digits}f} ({cell['min']:.{digits}f}–{cell['max']:.{digits}f})"


def _times(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:.2f}×"


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The markdown table: medians over the repeats with (min–max), ratios to joulebench."""
    lines = [
        "| tokens | rate | tool | runs ok | arrived | realized req/s | lateness p50 ms | lateness p99 ms "
        "| lateness max ms | CPU ms/req sending | CPU ms/req whole | p99 ÷ joulebench | CPU ÷ joulebench "
        "(sending / whole) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratios = row["vs_joulebench"]
        arrived = f"{min(row['arrived'])}–{max(row['arrived'])}" if row["arrived"] else "–"
        if row["arrived"] and min(row["arrived"]) == max(row["arrived"]):
            arrived = str(row["arrived"][0])
        cells = [
            str(row["tokens"]),
            f"{row['rate']:g}",
            row["tool"],
            f"{row['ok_runs']}/{row['runs']}",
            f"{arrived} of {row['requests']}",
            _spread(row["realized_rate"], 1),
            _spread(row["lateness_p50_ms"], 2),
            _spread(row["lateness_p99_ms"], 2),
            _spread(row["lateness_max_ms"], 2),
            _spread(row["cpu_ms_per_request"], 3),
            _spread(row["cpu_ms_per_request_total"], 2),
            _times(ratios["lateness_p99_ms"]),
            f"{_times(ratios['cpu_ms_per_request'])} / {_times(ratios['cpu_ms_per_request_total'])}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    failures = [
        f"- {r['tool']} at {r['rate']:g} req/s, {r['tokens']} tokens: {e}" for r in rows for e in r["errors"]
    ]
    if failures:
        lines += ["", "Failed or skipped runs (not in the figures):", *failures]
    return "\n".join(lines)
