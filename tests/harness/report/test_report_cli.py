"""`joulebench report RUN` on a synthetic run folder: files, consistency of the numbers, errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from joulebench_testkit import run_main
from run_synth import S, build_run

from harness.report.format import fmt_num
from harness.runfolder.report_files import read_energy


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    run = build_run(tmp_path_factory.mktemp("runs"))
    assert run_main(["report", str(run), "--quiet"]) == 0
    return run


def test_report_writes_the_three_files(reported, capsys):
    for name in ("summary.json", "energy.parquet", "report.html"):
        assert (reported / name).is_file()
    summary = json.loads((reported / "summary.json").read_text())
    assert summary["schema_version"] == 1 and summary["method"] == "time"
    assert [a["name"] for a in summary["arms"]] == ["fixed", "bursty"]
    for block in [summary["run"], *summary["arms"]]:
        assert block["energy_j_attributed"] + block["energy_j_unattributed"] == pytest.approx(
            block["energy_j_total"], rel=1e-9
        )
        for key in ("mean", "p50", "p90", "p99", "ci95"):
            assert block["j_per_request"][key] is not None
        assert block["wh_per_request"]["mean"] == pytest.approx(block["j_per_request"]["mean"] / 3600)
        assert block["j_per_output_token"] > 0 and block["latency_s"]["ttft"]["p50"] == pytest.approx(0.030)
    frame, method = read_energy(reported)
    assert method == "time" and len(frame) == 40
    assert frame["energy_j"].sum() == pytest.approx(summary["conservation"]["attributed_j"])


def test_bursty_costs_less_per_request_than_fixed(reported):
    """The synthetic GPU pays 150 W whenever anything runs: batching 5 at once must come out cheaper."""
    arms = {a["name"]: a for a in json.loads((reported / "summary.json").read_text())["arms"]}
    assert arms["bursty"]["j_per_request"]["ci95"][1] < arms["fixed"]["j_per_request"]["ci95"][0]
    assert arms["bursty"]["all_in"]["j_per_request"] < arms["fixed"]["all_in"]["j_per_request"]
    assert arms["fixed"]["rate"]["target"] == 2.0  # from the plan header


def test_report_html_is_self_contained_and_matches_the_summary(reported):
    page = (reported / "report.html").read_text()
    summary = json.loads((reported / "summary.json").read_text())
    assert re.findall(r'(?:src|href)="(?!data:)', page) == []  # no external assets
    assert "<link" not in page and "http://" not in page and "https://" not in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4
    embedded = re.search(
        r'<script type="application/json" id="joulebench-summary">(.*?)</script>', page, re.S
    )
    assert json.loads(embedded.group(1)) == summary
    for arm in summary["arms"]:
        assert f"<td>{fmt_num(arm['j_per_request']['mean'])}</td>" in page
        assert f"<th>{arm['name']}</th>" in page


def test_report_prints_the_summary_table(reported, capsys):
    assert run_main(["report", str(reported), "--method", "tokens"]) == 0
    out = capsys.readouterr().out
    assert "method tokens" in out and "bursty" in out and "fixed" in out
    assert "Least energy per successful request: bursty" in out
    assert json.loads((reported / "summary.json").read_text())["method"] == "tokens"


def test_report_without_power_is_flagged_not_zero(tmp_path, capsys):
    run = build_run(tmp_path, with_power=False)
    assert run_main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "no power samples" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["run"]["energy_j_total"] is None and summary["run"]["j_per_request"]["mean"] is None
    assert "no_power_data" in summary["arms"][0]["flags"]
    assert run_main(["report", str(run), "--strict", "--quiet"]) == 1


def test_report_with_power_on_another_clock(tmp_path):
    run = build_run(tmp_path, power_offset_ns=3600 * S)
    assert run_main(["report", str(run), "--quiet"]) == 0
    codes = {f["code"] for f in json.loads((run / "summary.json").read_text())["flags"]}
    assert "power_outside_run" in codes


def test_report_with_zero_successful_requests(tmp_path):
    run = build_run(tmp_path, status="http_error")
    assert run_main(["report", str(run), "--quiet"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["run"]["requests"]["by_status"] == {"http_error": 40}
    assert summary["run"]["j_per_request"]["mean"] is None
    assert summary["run"]["energy_j_failed"] > 0


def _corrupt(run, name, text="garbage"):
    (run / name).write_text(text)


def _missing(tmp_path):
    return tmp_path / "nope"


def _empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _no_manifest(tmp_path):
    run = build_run(tmp_path)
    (run / "manifest.json").unlink()
    return run


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_missing, "no such run folder"),
        (_empty, "not a joulebench run folder"),
        (_no_manifest, "not a joulebench run folder"),
    ],
)
def test_report_errors_for_missing_folders(tmp_path, capsys, make, message):
    assert run_main(["report", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("joulebench: error:") and message in err[0]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("manifest.json", "not valid JSON"),
        ("requests.parquet", "requests.parquet: not a readable Parquet file"),
        ("power.parquet", "not a readable Parquet file"),
        ("plan.parquet", "plan"),
    ],
)
def test_report_errors_for_corrupt_files(tmp_path, capsys, name, message):
    run = build_run(tmp_path)
    _corrupt(run, name)
    assert run_main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("joulebench: error:") and message in err[0]
    assert not (run / "summary.json").exists()  # nothing half-written


def test_report_bad_flag_value(tmp_path, capsys):
    run = build_run(tmp_path)
    assert run_main(["report", str(run), "--method", "watts"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "joulebench: error: --method 'watts': expected one of time, tokens, steps"
    )
    assert run_main(["report", str(run), "--idle", "median"]) == 2
    assert capsys.readouterr().err.strip().startswith("joulebench: error: --idle 'median': expected one of")


def test_report_as_a_real_process(tmp_path):
    """The installed entry point: exit status and a single error line, without a traceback."""
    args = [sys.executable, "-m", "harness", "report", str(tmp_path / "missing")]
    missing = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"joulebench: error: {tmp_path / 'missing'}: no such run folder"
