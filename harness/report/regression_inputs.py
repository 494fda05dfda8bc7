"""The figures `check` compares, read from a run folder (summary.json, requests.parquet) or an experiment
folder (cells.parquet); see `regression` for what is compared and how."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from foundation.errors import InputError
from harness.energy import BootstrapSpec
from harness.energy.repeats import EXCLUDING_FLAGS
from harness.energy.stats import describe
from harness.report.regression import ArmFigures, Estimate
from harness.runfolder import RunFolder
from harness.runfolder.experiment_files import ExperimentFolder
from harness.runfolder.folder_kind import Kind, folder_kind, has_power
from harness.runfolder.report_files import SUMMARY_FILE, read_summary
from harness.runfolder.requests_file import read_requests

# cells.parquet's column of each figure.
CELL_COLUMNS = {"all_in_j": "j_per_request_all_in", "ttft_p50_s": "ttft_p50_s", "e2e_p50_s": "e2e_p50_s"}


def kind_of(path: Path, flag: str) -> Kind:
    """A run or an experiment; InputError naming the flag (or argument) and path otherwise."""
    try:
        kind = folder_kind(path)
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot open the folder ({exc.strerror})") from None
    if kind is None:
        raise InputError(f"{flag} {path}: neither a joulebench run folder nor an experiment folder")
    return kind


def run_figures(path: Path) -> list[ArmFigures]:
    """Per arm: all-in J/request with its CI from summary.json, TTFT and E2E p50 with bootstrap CIs over
    the run's successful requests (seeded as the summary's own bootstrap)."""
    folder = RunFolder.open(path)
    if not (path / SUMMARY_FILE).is_file() and not has_power(folder, folder.manifest()):
        # `joulebench report` would not help: without power there is no summary and no energy.
        raise InputError(
            f"{path}: no power source, so no energy to check (latency-only runs are not supported by check)"
        )
    summary = read_summary(path)
    frame, _ = read_requests(path / RunFolder.REQUESTS)
    try:
        return _arm_figures(summary, frame)
    except (KeyError, TypeError, AttributeError) as exc:
        # A summary of an older joulebench, or edited by hand: one line, not a traceback.
        what = f"no field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise InputError(f"{path / SUMMARY_FILE}: not a summary check can read ({what})") from None


def _arm_figures(summary: dict[str, Any], frame: pd.DataFrame) -> list[ArmFigures]:
    boot = summary.get("bootstrap") or {}
    spec = BootstrapSpec(resamples=int(boot.get("resamples", 1000)), seed=int(boot.get("seed", 0)))
    errors = _error_codes(summary)
    warmup = frame["warmup"].fillna(False).to_numpy(dtype=bool)
    ok = (frame["status"].astype(str) == "ok").to_numpy() & ~warmup
    arms = summary["arms"] or [summary["run"]]
    out = []
    for stream, block in enumerate(arms):
        name = str(block["name"])
        rows = ok if not summary["arms"] else ok & (frame["arm"].astype(str) == name).to_numpy()
        all_in = block.get("all_in") or {}
        figures = {
            "all_in_j": Estimate(all_in.get("j_per_request"), _pair(all_in.get("ci95"))),
            "ttft_p50_s": _median(frame, rows, "first_token_ns", spec, 2 * stream),
            "e2e_p50_s": _median(frame, rows, "done_ns", spec, 2 * stream + 1),
        }
        mine = sorted({c for scope, codes in errors.items() if scope in (name, "run") or
                       scope.startswith("gpu ") for c in codes})  # fmt: skip
        out.append(ArmFigures(name, figures, mine))
    return out


def experiment_figures(path: Path) -> list[ArmFigures]:
    """Per (arm, offered rate): the mean over done repeats of each figure, the repeats' values and how
    many of the planned repeats are done (pending and running cells are not figures yet). A
    done cell flagged with one of `EXCLUDING_FLAGS` makes its arm an error (the experiment's report
    leaves such cells out; a check does not pass over them)."""
    cells = ExperimentFolder.open(path).read_cells()
    is_done = (cells["status"] == "done").to_numpy()
    if not is_done.any():
        raise InputError(f"{path / ExperimentFolder.CELLS}: no done cell to compare")
    out = []
    arms = cells["arm"].astype(str)
    rates = cells["rate"].astype("Float64").fillna(-1.0).astype(float)  # -1: the arms' own rates
    for arm, rate in dict.fromkeys(zip(arms, rates, strict=True)):
        planned = (arms == arm).to_numpy() & (rates == rate).to_numpy()
        group = cells[planned & is_done]
        label = arm if rate < 0 else f"{arm} @ {rate:g} req/s"
        codes = {c.strip() for f in group["flags"] if isinstance(f, str) for c in f.split(",")}
        errors = sorted(codes & set(EXCLUDING_FLAGS))
        repeats = {m: _finite(group[col]) for m, col in CELL_COLUMNS.items()}
        figures = {m: Estimate(float(np.mean(v)) if v else None) for m, v in repeats.items()}
        out.append(ArmFigures(label, figures, errors, repeats, (len(group), int(planned.sum()))))
    return out


def _finite(column: pd.Series) -> list[float]:
    return [float(v) for v in pd.to_numeric(column, errors="coerce") if math.isfinite(v)]


def _median(frame: pd.DataFrame, rows: np.ndarray, end: str, spec: BootstrapSpec, stream: int) -> Estimate:
    # Subtracted as integers: nanosecond clocks lose precision as floats.
    span = frame[end].astype("Int64") - frame["sent_ns"].astype("Int64")
    seconds = (span.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan) / 1e9)[rows]
    stats = describe(seconds[np.isfinite(seconds)], spec, stream)
    return Estimate(stats["p50"], _pair(stats["ci95_p50"]))


def _pair(ci: Any) -> tuple[float, float] | None:
    return None if ci is None else (float(ci[0]), float(ci[1]))


def _error_codes(summary: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for flag in summary.get("flags", []):
        if flag.get("severity") == "error":
            out.setdefault(str(flag.get("scope", "run")), set()).add(str(flag["code"]))
    return out
