"""Reports of a run whose power ends inside an arm, and of a run sent late: the arm is marked wherever
its figures are shown, no verdict names a cheapest arm, and --strict fails; the lateness bound can be
set on the run (manifest) or on the report."""

from __future__ import annotations

import json

import pytest
from joulebench_testkit import one_line_error, run_main
from run_synth import build_run

from harness.report import cheapest_arm
from harness.runfolder import RunFolder


def _summary(run) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.fixture(scope="module")
def cut_short(tmp_path_factory):
    """Power samples end 25 s after T0: inside the second arm (bursty, about 21 to 30 s)."""
    return build_run(tmp_path_factory.mktemp("cut"), power_end_s=25.0)


def test_an_arm_without_whole_power_has_no_all_in_figure_and_no_verdict(cut_short, capsys):
    assert run_main(["report", str(cut_short)]) == 0
    out = capsys.readouterr().out
    fixed, bursty = _summary(cut_short)["arms"]
    assert bursty["all_in"]["j_per_request"] is None and "power_incomplete" in bursty["flags"]
    assert fixed["all_in"]["j_per_request"] is not None and "power_incomplete" not in fixed["flags"]
    share = bursty["power_coverage"]["min"]
    assert 0.2 < share < 0.8
    assert "Least energy per successful request" not in out
    assert "No verdict on which arm cost least" in out and "bursty: power_incomplete" in out
    assert f"- (power {share:.1%})" in out  # the all-in cell says why it is empty
    assert "bursty (!)" in out
    assert run_main(["report", str(cut_short), "--quiet", "--strict"]) == 1


def test_the_page_marks_the_incomplete_arm(cut_short):
    assert run_main(["report", str(cut_short), "--quiet"]) == 0
    page = (cut_short / "report.html").read_text()
    bursty = _summary(cut_short)["arms"][1]
    assert '<th class="flag-error">bursty<br>error: power_incomplete</th>' in page
    assert "<th>fixed</th>" in page
    assert f"(only {bursty['power_coverage']['min']:.1%} of the window under power)" in page
    assert '<p class="flag-error">No verdict on which arm cost least' in page


def test_compare_takes_no_difference_from_part_of_an_arm(cut_short, tmp_path, capsys):
    out = tmp_path / "cmp.json"
    assert run_main(["compare", str(cut_short), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    fixed, bursty = result["entries"]
    assert bursty["errors"] == ["power_incomplete"] and fixed["errors"] == []
    assert bursty["vs_baseline"]["diff"] is None and bursty["vs_baseline"]["significant"] is None
    assert result["no_verdict"].startswith("No verdict on which arm cost least")
    assert "bursty: power_incomplete" in capsys.readouterr().out


def test_whole_power_keeps_the_verdict(tmp_path, capsys):
    run = build_run(tmp_path)
    assert run_main(["report", str(run), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "Least energy per successful request: bursty" in out and "No verdict" not in out
    assert run_main(["compare", str(run), "--json", str(tmp_path / "c.json")]) == 0
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["no_verdict"] is None and result["entries"][1]["vs_baseline"]["significant"] is True


def test_cheapest_arm_refuses_on_any_error_flag():
    arm = {"all_in": {"j_per_request": 10.0}, "j_per_request": {"mean": 8.0}}
    summary = {
        "arms": [{**arm, "name": "a"}, {**arm, "name": "b", "all_in": {"j_per_request": 12.0}}],
        "flags": [],
    }
    assert cheapest_arm(summary).startswith("Least energy per successful request: a")
    late = {"code": "lateness_over_bound", "severity": "error", "message": "", "scope": "b"}
    summary["flags"] = [late, {**late, "code": "short_window", "severity": "warning"}]
    assert cheapest_arm(summary) == (
        "No verdict on which arm cost least: error flags (b: lateness_over_bound) mean a figure is "
        "incomplete or not of the plan's load."
    )


# --- late sends ------------------------------------------------------------------------------------


@pytest.fixture
def late(tmp_path):
    """Every request of arm `fixed` (planned 500 ms apart) sent 300 ms late: its bound is the 100 ms cap."""
    return build_run(tmp_path, late_ms=300.0)


def test_late_sends_are_flagged_and_strict_fails(late, capsys):
    assert run_main(["report", str(late), "--strict"]) == 1
    out = capsys.readouterr().out
    fixed, bursty = _summary(late)["arms"]
    assert fixed["lateness_ms"]["bound"] == 100.0 and fixed["lateness_ms"]["bound_basis"] == "planned_gaps"
    assert "lateness_over_bound" in fixed["flags"] and "lateness_over_bound" not in bursty["flags"]
    assert "exceeds the bound of 100.0 ms" in out and "No verdict on which arm cost least" in out
    page = (late / "report.html").read_text()
    assert "<td>100 (from the planned gaps): EXCEEDED</td>" in page


def test_the_bound_from_the_report_flag_or_the_runs_manifest(late, capsys):
    assert run_main(["report", str(late), "--quiet", "--strict", "--max-lateness-ms", "500"]) == 0
    assert _summary(late)["arms"][0]["lateness_ms"]["bound"] == 500.0
    assert _summary(late)["options"]["max_lateness_ms"] == 500.0
    RunFolder.open(late).update_manifest(energy={"method": "time", "max_lateness_ms": 400})
    assert run_main(["report", str(late), "--quiet", "--strict"]) == 0  # the run's own bound
    lateness = _summary(late)["arms"][0]["lateness_ms"]
    assert (lateness["bound"], lateness["bound_basis"]) == (400.0, "max_lateness_ms")
    assert run_main(["report", str(late), "--quiet", "--strict", "--max-lateness-ms", "50"]) == 1
    capsys.readouterr()


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf", "soon"])
def test_a_bad_bound_is_one_line(late, capsys, value):
    status = run_main(["report", str(late), "--quiet", "--max-lateness-ms", value])
    message = one_line_error(capsys.readouterr().err, status)
    assert message == f"--max-lateness-ms: expected milliseconds above 0, got {value!r}"


def test_a_bad_bound_in_the_manifest_is_one_line(late, capsys):
    RunFolder.open(late).update_manifest(energy={"method": "time", "max_lateness_ms": "soon"})
    status = run_main(["report", str(late), "--quiet"])
    message = one_line_error(capsys.readouterr().err, status)
    assert message.endswith("manifest.json: energy.max_lateness_ms: expected milliseconds > 0, got 'soon'")
