"""The tables `joulebench export` writes: a run's requests with their energy, and its arms' figures.

The arms' figures are an experiment cell's (`harness.experiment.cell_figures`: the same columns and
the same rules: an arm whose power is incomplete has no energy figure, a run without power has
latency only), less the steady-state ones, plus the intervals and p99s that a single run reports.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from foundation.errors import InputError
from harness.experiment.cell_figures import cell_figures, num, requests_only
from harness.runfolder import RunFolder
from harness.runfolder.folder_kind import Kind, folder_kind, has_power
from harness.runfolder.report_files import ENERGY_FILE, ENERGY_FORMAT, SUMMARY_FILE, read_energy, read_summary

ARM_COLUMNS = (
    "run_id", "arm", "policy", "requests", "ok",
    "j_per_request_all_in", "all_in_ci95_low", "all_in_ci95_high",
    "j_per_request_attributed", "attributed_ci95_low", "attributed_ci95_high",
    "j_idle_per_request", "j_above_idle_per_request", "resolution_j_per_request",
    "mean_power_w", "energy_j_total", "idle_power_w", "duration_s",
    "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "e2e_p50_s", "e2e_p90_s", "e2e_p99_s",
    "user_ttft_p50_s", "user_ttft_p99_s", "user_e2e_p50_s", "user_e2e_p99_s",
    "hold_p50_ms", "hold_p99_ms", "lateness_p99_ms", "realized_rate", "goodput_share", "flags",
)  # fmt: skip


def request_table(folder: RunFolder) -> pd.DataFrame:
    """requests.parquet's rows (less `chunk_ns`, every chunk's time: a list no CSV holds; `chunks` counts
    them) with energy.parquet's figures joined by request_id; null energy without one (no power)."""
    requests = folder.requests().drop(columns=["chunk_ns"])
    own = [c for c in ENERGY_FORMAT.schema.names if c not in requests.columns]
    if not (folder.path / ENERGY_FILE).is_file():
        return requests.assign(**dict.fromkeys(own, None))
    energy, _ = read_energy(folder.path)
    return requests.merge(energy[["request_id", *own]], on="request_id", how="left", validate="one_to_one")


def arm_table(folder: RunFolder, run_id: str) -> pd.DataFrame:
    reported = (folder.path / SUMMARY_FILE).is_file()
    if not reported and has_power(folder, folder.manifest()):  # its energy is not joined: no "no power"
        raise InputError(
            f"{folder.path}: power was read but not reported: run joulebench report {folder.path} first"
        )
    blocks = {b["name"]: b for b in read_summary(folder.path)["arms"]} if reported else {}
    latency_only = {} if reported else requests_only(folder)  # every arm's, from one read of the log
    rows = []
    for arm in folder.plan().header.arms:
        if reported:
            try:
                row = cell_figures(folder.path, arm.name, None)
            except ValueError as exc:  # an arm the summary lacks
                raise InputError(f"{folder.path}: {exc}") from None
            extra = _from_summary(blocks.get(arm.name, {}), row)
        elif arm.name in latency_only:
            row, extra = latency_only[arm.name]
        else:
            raise InputError(f"{folder.path}: requests.parquet has no arm {arm.name!r}")
        rows.append({**row, **extra, "run_id": run_id, "arm": arm.name, "policy": arm.policy or ""})
    return pd.DataFrame(rows).reindex(columns=list(ARM_COLUMNS))


def _from_summary(block: dict[str, Any], row: dict[str, Any]) -> dict[str, float]:
    # An interval goes where its figure goes: none where cell_figures left the figure out.
    all_in = _interval((block.get("all_in") or {}).get("ci95"), row["j_per_request_all_in"])
    attributed = _interval((block.get("j_per_request") or {}).get("ci95"), row["j_per_request_attributed"])
    latency = block.get("latency_s") or {}
    return {
        "all_in_ci95_low": all_in[0],
        "all_in_ci95_high": all_in[1],
        "attributed_ci95_low": attributed[0],
        "attributed_ci95_high": attributed[1],
        "ttft_p99_s": num((latency.get("ttft") or {}).get("p99")),
        "e2e_p99_s": num((latency.get("e2e") or {}).get("p99")),
    }


def _interval(ci: Any, figure: float) -> tuple[float, float]:
    if not isinstance(ci, list) or len(ci) != 2 or math.isnan(figure):
        return math.nan, math.nan
    return num(ci[0]), num(ci[1])


def run_or_experiment(path: Path) -> Kind:
    """`run` or `experiment`; one line when `path` is neither."""
    if not RunFolder.is_folder(path):
        raise InputError(f"{path}: no such folder")
    try:
        kind = folder_kind(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot open the run folder ({exc.strerror})") from None
    if kind is None:
        raise InputError(
            f"{path}: not a joulebench run folder (manifest.json and plan.parquet) "
            "or experiment folder (experiment.yaml)"
        )
    return kind
