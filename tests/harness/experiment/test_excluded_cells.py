"""Cells whose arm had power over only part of its window, or was sent late, feed no experiment figure or
verdict: the cell's row has no energy figure, the statistics leave it out, and the report counts it."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
from joulebench_testkit import run_main
from rich.console import Console

from harness.energy import repeats
from harness.experiment.cell_figures import cell_figures
from harness.report.experiment_report import (
    ExperimentView,
    experiment_document,
    experiment_table,
    render_experiment_html,
)

M = "j_per_request_all_in"


def _run_synth():
    # tests/harness/report is not a package: load its synthetic run folder by path, under its own name.
    if "run_synth" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "report" / "run_synth.py"
        spec = importlib.util.spec_from_file_location("run_synth", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["run_synth"] = module
        spec.loader.exec_module(module)
    return sys.modules["run_synth"]


def test_a_cell_without_whole_power_has_no_energy_figure(tmp_path):
    run = _run_synth().build_run(tmp_path, power_end_s=25.0)  # ends inside arm bursty
    assert run_main(["report", str(run), "--quiet"]) == 0
    whole, cut = cell_figures(run, "fixed", None), cell_figures(run, "bursty", None)
    assert math.isfinite(whole[M]) and math.isfinite(whole["j_per_request_attributed"])
    assert "power_incomplete" not in whole["flags"].split(",")
    assert "power_incomplete" in cut["flags"].split(",")
    for column in (
        M,
        "j_per_request_attributed",
        "j_above_idle_per_request",
        "energy_j_total",
        "mean_power_w",
    ):
        assert math.isnan(cut[column]), column
    assert cut["ok"] == 20 and cut["e2e_p50_s"] > 0  # what was not energy stays


def _cells(flags: dict[tuple[int, str], str]) -> pd.DataFrame:
    """Arms a (10 J) and b (12 J) over 4 repeats, every cell done; `flags` by (repeat, arm)."""
    rows = []
    for repeat in range(1, 5):
        for position, arm in enumerate(("a", "b")):
            value = (10.0 if arm == "a" else 12.0) + 0.1 * repeat
            rows.append({
                "experiment_id": "x", "cell": len(rows), "block": repeat - 1, "repeat": repeat,
                "rate": math.nan, "arm": arm, "position": position, "previous_arm": None, "status": "done",
                "run_id": f"r{len(rows)}", "run_dir": f"runs/r{len(rows)}", "requests": 10, "ok": 10,
                M: value, "j_per_request_attributed": value - 1, "ttft_p50_s": 0.05, "e2e_p50_s": 1.0,
                "resolution_j_per_request": 0.0, "flags": flags.get((repeat, arm), ""),
            })  # fmt: skip
    return pd.DataFrame(rows)


def test_the_statistics_leave_flagged_cells_out():
    flags = {(1, "b"): "lateness_over_bound", (2, "a"): "idle_drift,power_incomplete", (3, "a"): "idle_drift"}
    cells = _cells(flags)
    cells.loc[(cells["repeat"] == 1) & (cells["arm"] == "b"), M] = 99.0  # a late cell's outlier
    assert repeats.excluded(cells).tolist() == [False, True, True, False, False, False, False, False]
    figures = {f.arm: f for f in repeats.arm_figures(cells, M)}
    assert figures["a"].repeats == 3 and figures["b"].repeats == 3
    assert figures["b"].mean == pytest.approx(12.3)  # repeats 2, 3, 4: the 99 J cell is not in it
    (pair,) = repeats.pair_differences(cells, M)
    assert pair.repeats == 2  # repeats 3 and 4 only: 1 lost b, 2 lost a
    assert sum(p.cells for p in repeats.position_effects(cells, M)) == 6


def test_the_report_counts_them_and_says_so():
    cells = _cells({(1, "b"): "power_incomplete", (2, "b"): "lateness_over_bound"})
    cells.loc[(cells["repeat"] == 1) & (cells["arm"] == "b"), M] = math.nan  # as cell_figures leaves it
    view = ExperimentView("x", "Two arms", {"level": 0.95, "multiplicity": "bonferroni"})
    doc = experiment_document(cells, view)
    assert doc["cells_excluded"] == 2 and doc["cells_without_metric"] == 0
    arm_b = next(a for a in doc["rates"][0]["arms"] if a["arm"] == "b")
    assert arm_b["cells"]["excluded"] == 2 and arm_b["figures"][M]["repeats"] == 2
    text = "2 of 8 done cells left out of every figure and verdict"
    assert text in render_experiment_html(doc, cells)
    console = Console(width=200, record=True)
    console.print(experiment_table(doc))
    assert text in console.export_text()
