"""A cell's idle and above-idle J/request come from its summary's `all_in_split` (the idle floor with
its clamp where power fell below idle); a summary from before the split falls back to idle power ×
window / successes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.experiment.cell_figures import cell_figures
from harness.report.run_inputs import analyze_run
from harness.report.run_report import summary_document
from harness.runfolder.report_files import SUMMARY_FILE

H100_RUN = (
    Path(__file__).resolve().parents[3] / "docs/results/arrival-shaping-h100/raw/20261122T041328-345a8a03"
)


def test_idle_apart_comes_from_the_split_and_older_summaries_keep_the_formula(tmp_path: Path) -> None:
    _, analysis = analyze_run(H100_RUN)
    doc = summary_document(analysis, "r")
    (tmp_path / SUMMARY_FILE).write_text(json.dumps(doc))
    idle_w = doc["idle"]["power_w"]

    def formula(block: dict) -> float:
        return idle_w * block["window"]["duration_s"] / block["requests"]["ok"]

    clamped = 0
    for block in doc["arms"]:
        row = cell_figures(tmp_path, block["name"], None)
        split = block["all_in_split"]
        assert row["j_idle_per_request"] == split["idle_j_per_request"]
        assert row["j_above_idle_per_request"] == split["above_idle_j_per_request"]
        clamped += row["j_idle_per_request"] != pytest.approx(formula(block), rel=1e-9)
    assert clamped  # an arm whose power fell below idle: the formula would have missed the clamp

    for block in [*doc["arms"], doc["run"]]:
        del block["all_in_split"]
    (tmp_path / SUMMARY_FILE).write_text(json.dumps(doc))
    for block in doc["arms"]:
        row = cell_figures(tmp_path, block["name"], None)
        assert row["j_idle_per_request"] == pytest.approx(formula(block), rel=1e-12)
        all_in = block["all_in"]["j_per_request"]
        assert row["j_above_idle_per_request"] == pytest.approx(all_in - formula(block), rel=1e-12)


def test_a_gpu_scoped_flag_reaches_the_cell(tmp_path: Path) -> None:
    # A cell runs one arm: a flag on its GPU (an unstable power lag, failed reads) is the cell's.
    _, analysis = analyze_run(H100_RUN)
    doc = summary_document(analysis, "r")
    doc["flags"].append({"code": "power_lag_unstable", "severity": "error", "scope": "gpu 0", "message": "m"})
    (tmp_path / SUMMARY_FILE).write_text(json.dumps(doc))
    row = cell_figures(tmp_path, doc["arms"][0]["name"], None)
    assert "power_lag_unstable" in row["flags"].split(",")
