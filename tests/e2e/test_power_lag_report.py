"""`joulebench report` on a committed H100 run (real NVML power): the power series' lag is estimated,
applied, recorded in summary.json and printed; each arm's all-in figure comes split into idle and above
idle; and the correction gives a sparse arm's requests the energy that trailed them into the gaps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from joulebench_testkit import run_main

from harness.energy import AnalysisOptions
from harness.report.run_inputs import analyze_run

H100_RUN = (
    Path(__file__).resolve().parents[2] / "docs/results/arrival-shaping-h100/raw/20261122T041328-345a8a03"
)


def test_report_estimates_applies_and_shows_the_power_lag(tmp_path: Path, capsys) -> None:
    run = tmp_path / H100_RUN.name
    shutil.copytree(H100_RUN, run)
    assert run_main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())

    lag = summary["power_lag"]["gpus"]["0"]
    assert summary["power_lag"]["setting"] == "auto" and lag["status"] == "stable"
    assert 0.02 <= lag["estimate_s"] <= 0.15 and lag["applied_s"] == lag["estimate_s"]
    assert f"gpu 0 estimated {lag['estimate_s'] * 1e3:.0f} ms (stable), applied" in out
    assert "power_lag_unstable" not in summary["run"]["flags"]

    for block in [*summary["arms"], summary["run"]]:
        split = block["all_in_split"]
        assert split["idle_j_per_request"] + split["above_idle_j_per_request"] == pytest.approx(
            block["all_in"]["j_per_request"], rel=1e-12
        )
        assert split["above_idle_j_per_request"] > 0

    # Uncorrected, the 500 ms arm's requests lose the tail of their power to the gap after each.
    _, uncorrected = analyze_run(run, options=AnalysisOptions(power_lag="off"))
    before = {a["name"]: a for a in uncorrected.summary["arms"]}["fixed-500ms"]
    after = {a["name"]: a for a in summary["arms"]}["fixed-500ms"]
    assert after["j_per_request"]["mean"] > before["j_per_request"]["mean"] * 1.02
    # The arm's own energy barely moves: the window shifts by the lag, not its length.
    assert after["all_in"]["j_per_request"] == pytest.approx(before["all_in"]["j_per_request"], rel=1e-3)
