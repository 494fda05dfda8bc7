"""`joulebench compare RUN...` and the terminal summary."""

from __future__ import annotations

import json

import pytest
from joulebench_testkit import run_main
from rich.console import Console
from run_synth import build_run

from harness.report import cheapest_arm, render_terminal_summary


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    a = build_run(out)
    b = build_run(out)  # same plan: a second folder with a -2 suffix
    assert run_main(["report", str(a), "--quiet"]) == 0  # b has no saved report: compare joins it
    return a, b


def test_compare_arms_of_one_run(two_runs, tmp_path, capsys):
    a, _ = two_runs
    out = tmp_path / "cmp.json"
    assert run_main(["compare", str(a), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["baseline"] == "fixed"
    fixed, bursty = result["entries"]
    assert fixed["vs_baseline"] is None
    vs = bursty["vs_baseline"]
    assert vs["diff"] == pytest.approx(bursty["j_per_request"]["mean"] - fixed["j_per_request"]["mean"])
    assert vs["ci95"][0] < vs["diff"] < vs["ci95"][1] < 0 and vs["significant"] is True
    assert vs["all_in_diff"] == pytest.approx(
        bursty["all_in"]["j_per_request"] - fixed["all_in"]["j_per_request"]
    )
    assert vs["all_in_ci95"][0] < vs["all_in_diff"] < vs["all_in_ci95"][1]
    table = capsys.readouterr().out
    assert "baseline fixed" in table and "bursty" in table


def test_compare_two_runs_side_by_side(two_runs, tmp_path, capsys):
    a, b = two_runs
    out = tmp_path / "cmp.json"
    assert run_main(["compare", str(a), str(b), "--baseline", f"{b.name}:bursty", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    labels = [e["label"] for e in result["entries"]]
    assert labels == [f"{a.name}:fixed", f"{a.name}:bursty", f"{b.name}:fixed", f"{b.name}:bursty"]
    assert result["baseline"] == f"{b.name}:bursty"
    same = result["entries"][1]["vs_baseline"]  # identical synthetic runs: no difference
    assert same["diff"] == pytest.approx(0.0, abs=1e-9) and same["significant"] is False
    assert any("joined it now" in n for n in result["notes"])


@pytest.mark.parametrize(
    ("baseline", "message"),
    [("bursty", "several runs have arm 'bursty'"), ("nosuch", "no such arm")],
)
def test_compare_bad_baseline(two_runs, capsys, baseline, message):
    a, b = two_runs
    assert run_main(["compare", str(a), str(b), "--baseline", baseline]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_compare_missing_and_repeated_runs(two_runs, tmp_path, capsys):
    a, _ = two_runs
    assert run_main(["compare", str(tmp_path / "gone")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert run_main(["compare", str(a), str(a)]) == 2
    assert "listed twice" in capsys.readouterr().err


def test_compare_with_a_corrupt_summary(two_runs, tmp_path, capsys):
    run = build_run(tmp_path)
    assert run_main(["report", str(run), "--quiet"]) == 0
    (run / "summary.json").write_text("{broken")
    assert run_main(["compare", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "summary.json: not valid JSON" in err[0]


def test_terminal_summary(two_runs):
    a, _ = two_runs
    summary = json.loads((a / "summary.json").read_text())
    console = Console(record=True, width=200)
    render_terminal_summary(summary, console)
    text = console.export_text()
    for needle in ("fixed", "bursty", "run", "J/req mean", "measured", "Least energy per successful request"):
        assert needle in text
    line = cheapest_arm(summary)
    assert line.startswith("Least energy per successful request: bursty")
    assert "less than fixed" in line
    one_arm = summary | {"arms": summary["arms"][:1]}
    assert cheapest_arm(one_arm) is None


def test_compare_json_that_cannot_be_written(two_runs, tmp_path, capsys):
    a, _ = two_runs
    out = tmp_path / "no-such-folder" / "cmp.json"
    assert run_main(["compare", str(a), "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"joulebench: error: --json {out}: cannot write (No such file or directory)"]


def test_a_glob_over_the_out_folder_sees_the_newest_run_once(two_runs, tmp_path, capsys):
    a, b = two_runs
    (a.parent / "latest").unlink(missing_ok=True)
    (a.parent / "latest").symlink_to(b.name)  # what `joulebench run` leaves beside its runs
    out = tmp_path / "cmp.json"
    assert run_main(["compare", *map(str, sorted(a.parent.iterdir())), "--json", str(out)]) == 0
    labels = [e["label"] for e in json.loads(out.read_text())["entries"]]
    assert labels == [f"{a.name}:fixed", f"{a.name}:bursty", f"{b.name}:fixed", f"{b.name}:bursty"]
    assert run_main(["compare", str(a.parent / "latest"), "--json", str(out)]) == 0  # alone, it is the run
