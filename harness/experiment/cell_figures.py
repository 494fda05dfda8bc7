"""One cell's row of the tidy table, read from its finished run folder (summary.json, energy.parquet).

A cell runs one arm, so its figures are that arm's block of summary.json. Its idle part and above-idle
part are the block's `all_in_split` (the idle floor over the arm's window, clamped where power fell
below idle, per successful request; above idle is all-in minus that). A summary from before the split
has none: there the idle part is the idle power times the arm's window over its successful requests
(no clamp), and above-idle all-in minus that. The
all-in figure (the arm window's energy over its successful requests) carries the counter's
resolution: the window's two edges each fall somewhere between two counter updates, so the window's
energy is uncertain by about two update periods at the arm's mean power (0 for an exact counter, as
the simulated GPU's).

A cell whose arm's power samples cover only part of its window (flagged `power_incomplete`) has no
energy figure at all: a part of the window's energy is not the cell's, and the experiment's figures
and verdicts must not take it for one (they also leave such cells out by their flags).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from harness.experiment.definition import SteadyState
from harness.report.request_summary import arm_summary
from harness.runfolder import RunFolder
from harness.runfolder.report_files import SUMMARY_FILE, read_energy, read_summary

NAN = math.nan
_ENERGY_COLUMNS = (
    "duration_s", "j_per_request_all_in", "j_per_request_attributed", "j_idle_per_request",
    "j_above_idle_per_request", "resolution_j_per_request", "mean_power_w", "energy_j_total",
    "idle_power_w", "steady_j_per_request_attributed",
)  # fmt: skip


def cell_figures(run_dir: Path, arm: str, steady: SteadyState | None) -> dict[str, Any]:
    if not (run_dir / SUMMARY_FILE).is_file():
        rows = requests_only(RunFolder.open(run_dir))  # no power source: the run joined nothing
        if arm not in rows:
            raise ValueError(f"{run_dir}: requests.parquet has no arm {arm!r}")
        return rows[arm][0]
    summary = read_summary(run_dir)
    block = next((a for a in summary["arms"] if a["name"] == arm), None)
    if block is None:
        raise ValueError(f"{run_dir}: summary.json has no arm {arm!r}")
    ok = int(block["requests"]["ok"])
    all_in = _get(block, "all_in", "j_per_request")
    power = _get(block, "mean_power_w")
    duration = _get(block, "window", "duration_s")
    idle_w = _get(summary, "idle", "power_w")
    # The idle floor of the arm's window, shared over its successful requests; the rest of all-in is
    # above idle, whether a request was in flight or the GPU was still winding down between them.
    if "all_in_split" in block:
        idle = _get(block, "all_in_split", "idle_j_per_request")
        above = _get(block, "all_in_split", "above_idle_j_per_request")
    else:  # an older summary: without the clamp where power fell below idle
        idle = idle_w * duration / ok if ok else NAN
        above = all_in - idle
    period = float(summary.get("options", {}).get("counter_period_s") or 0.0)
    resolution = 2 * period * power / ok if ok and math.isfinite(power) else NAN
    # A cell runs one arm: the run's flags and its GPUs' (a power lag, failed reads) are the arm's too.
    scoped = {
        f["code"]
        for f in summary.get("flags", [])
        if f.get("scope") in (arm, "run") or str(f.get("scope", "")).startswith("gpu ")
    }
    flags = sorted({*block.get("flags", []), *scoped})
    row: dict[str, Any] = {
        "duration_s": duration,
        "requests": int(block["requests"]["total"]),
        "ok": ok,
        "j_per_request_all_in": all_in,
        "j_per_request_attributed": _get(block, "j_per_request", "mean"),
        "j_idle_per_request": idle,
        "j_above_idle_per_request": above,
        "resolution_j_per_request": resolution,
        "mean_power_w": power,
        "energy_j_total": _get(block, "energy_j_total"),
        "idle_power_w": idle_w,
        "ttft_p50_s": _get(block, "latency_s", "ttft", "p50"),
        "ttft_p90_s": _get(block, "latency_s", "ttft", "p90"),
        "e2e_p50_s": _get(block, "latency_s", "e2e", "p50"),
        "e2e_p90_s": _get(block, "latency_s", "e2e", "p90"),
        "lateness_p99_ms": _get(block, "lateness_ms", "p99"),
        "realized_rate": _get(block, "rate", "realized"),
        "flags": ",".join(flags),
        "hold_p50_ms": _get(block, "hold_ms", "p50"),
        "hold_p99_ms": _get(block, "hold_ms", "p99"),
        "user_ttft_p50_s": _get(block, "latency_s", "user_ttft", "p50"),
        "user_ttft_p99_s": _get(block, "latency_s", "user_ttft", "p99"),
        "user_e2e_p50_s": _get(block, "latency_s", "user_e2e", "p50"),
        "user_e2e_p99_s": _get(block, "latency_s", "user_e2e", "p99"),
        "goodput_share": _get(block, "goodput", "share"),
    }
    row.update(_steady(run_dir, arm, steady))
    if (block.get("power_coverage") or {}).get("complete") is False:
        row.update(dict.fromkeys([c for c in _ENERGY_COLUMNS if c != "duration_s"], NAN))
    return row


def requests_only(folder: RunFolder) -> dict[str, tuple[dict[str, Any], dict[str, float]]]:
    """Each arm's row from the request log alone (counts, latency, lateness; every energy figure NaN),
    and apart from it the arm's TTFT and E2E p99 (s): a run's export shows them, a cell's row has no
    column for them."""
    closed = [a.name for a in folder.plan().header.arms if a.closed_loop]
    arms: dict[str, tuple[dict[str, Any], dict[str, float]]] = {}
    for block in arm_summary(folder.requests(), closed):
        row: dict[str, Any] = dict.fromkeys(_ENERGY_COLUMNS, NAN)
        row.update(
            requests=block["planned"],
            ok=block["status"].get("ok", 0),
            ttft_p50_s=_ms(block["ttft_ms"], "p50"),
            ttft_p90_s=_ms(block["ttft_ms"], "p90"),
            e2e_p50_s=_ms(block["e2e_ms"], "p50"),
            e2e_p90_s=_ms(block["e2e_ms"], "p90"),
            lateness_p99_ms=num(block["lateness_ms"]["p99"]),
            realized_rate=num(block["rate_per_s"]),
            steady_requests=None,
            flags=",".join(["no_power", *block["errors"]]),
        )
        p99 = {"ttft_p99_s": _ms(block["ttft_ms"], "p99"), "e2e_p99_s": _ms(block["e2e_ms"], "p99")}
        arms[block["arm"]] = (row, p99)
    return arms


def _ms(stats: dict[str, Any], key: str) -> float:
    return num(stats[key]) / 1e3


def num(value: Any) -> float:
    """A figure read from a document; NaN where it has none (null)."""
    return NAN if value is None else float(value)


def _steady(run_dir: Path, arm: str, steady: SteadyState | None) -> dict[str, Any]:
    """The mean attributed J/request of the requests planned inside the steady window."""
    if steady is None:
        return {"steady_j_per_request_attributed": NAN, "steady_requests": None}
    energy, _ = read_energy(run_dir)
    rows = energy[(energy["arm"] == arm) & ~energy["warmup"]].sort_values("request_id")
    offsets = RunFolder.open(run_dir).plan().rows.set_index("request_id")["offset_s"]
    planned = offsets.reindex(rows["request_id"]).to_numpy(dtype=float)
    index = np.arange(len(rows))
    keep = (index >= steady.skip_requests) & (index < len(rows) - steady.drain_requests)
    if np.isfinite(planned).any():  # open loop: planned offsets (a closed-loop arm has none)
        last = float(np.nanmax(planned))
        keep &= (planned >= steady.skip_s) & (planned <= last - steady.drain_s)
    kept = rows[keep]
    kept = kept[kept["status"] == "ok"]
    value = float(kept["energy_j"].mean()) if len(kept) else NAN
    return {"steady_j_per_request_attributed": value, "steady_requests": len(kept)}


def _get(doc: dict[str, Any], *path: str) -> float:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return NAN
        node = node[key]
    return float(node)
