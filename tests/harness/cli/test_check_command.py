"""`joulebench check RUN --baseline RUN`: the exit status says whether a figure regressed, on real run
folders (tests/harness/report/run_synth.py's, reported by `joulebench report`) and a real cells table."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from joulebench_testkit import one_line_error, run_main
from synth_runs import build_run

from harness.runfolder.experiment_files import CELL_COLUMNS, ExperimentFolder
from harness.runfolder.power_file import load_power, save_power
from harness.runfolder.requests_file import read_requests, write_requests

MS = 1_000_000


def _reported(folder: Path) -> Path:
    assert run_main(["report", str(folder), "--quiet"]) == 0
    return folder


def _more_power(folder: Path, factor: float) -> Path:
    """The same run with the GPU drawing `factor` times the power: every all-in figure scales by it."""
    power = load_power(folder)
    power.series = [dataclasses.replace(s, energy_j=s.energy_j * factor) for s in power.series]
    save_power(folder, power)
    return folder


def _slower_first_token(folder: Path, by_ms: int) -> Path:
    """Every first token `by_ms` later (still before the request ends): TTFT grows, E2E does not."""
    path = folder / "requests.parquet"
    frame, anchor = read_requests(path)
    frame["first_token_ns"] = frame["first_token_ns"] + by_ms * MS
    write_requests(frame, path, anchor)
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return {
        "base": _reported(build_run(out)),
        "same": _reported(build_run(out)),
        "hungry": _reported(_more_power(build_run(out), 1.3)),
        "slight": _reported(_more_power(build_run(out), 1.02)),
        "slow": _reported(_slower_first_token(build_run(out), 20)),
        "late": _reported(build_run(out, late_ms=400)),
    }


def _check(candidate: Path, baseline: Path, *extra: str) -> int:
    return run_main(["check", str(candidate), "--baseline", str(baseline), *extra])


def test_the_same_run_again_passes(runs, capsys):
    assert _check(runs["same"], runs["base"], "--max-regression", "5%") == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" not in out
    assert out.count("fixed") >= 3 and out.count("bursty") >= 3  # every figure of every arm is shown


def test_thirty_percent_more_energy_fails_on_energy_only(runs, capsys):
    assert _check(runs["hungry"], runs["base"], "--max-regression", "5%") == 1
    lines = capsys.readouterr().out.splitlines()
    energy = [line for line in lines if "J/request" in line and line.split()[0] in ("fixed", "bursty")]
    assert len(energy) == 2 and all(line.rstrip().endswith("regressed") for line in energy)
    assert all("+30.0%" in line for line in energy)
    latency = [line for line in lines if " p50 " in line and line.split()[0] in ("fixed", "bursty")]
    assert latency and not any("regressed" in line for line in latency)
    # A threshold above the change lets it pass.
    assert _check(runs["hungry"], runs["base"], "--max-regression", "40%") == 0


def test_a_change_under_the_threshold_passes_and_over_it_fails(runs, capsys):
    assert _check(runs["slight"], runs["base"], "--max-regression", "5%") == 0
    assert _check(runs["slight"], runs["base"], "--max-regression", "0%") == 1
    assert "FAIL: regressed by more than 0%" in capsys.readouterr().out


def test_slower_first_tokens_fail_on_ttft(runs, capsys):
    assert _check(runs["slow"], runs["base"], "--max-regression", "10%") == 1
    out = capsys.readouterr().out
    ttft = [line for line in out.splitlines() if "TTFT p50" in line and not line.startswith("FAIL")]
    assert ttft and all(line.rstrip().endswith("regressed") for line in ttft)
    assert "FAIL: regressed by more than 10%: fixed TTFT p50 (s); bursty TTFT p50 (s)" in out


def test_an_error_flag_in_either_run_fails_with_a_line(runs, capsys):
    for candidate, baseline, side in (
        (runs["late"], runs["base"], "candidate"),
        (runs["base"], runs["late"], "baseline"),
    ):
        assert _check(candidate, baseline, "--max-regression", "50%") == 1
        out = capsys.readouterr().out
        assert f"FAIL: arm fixed: the {side} is flagged lateness_over_bound" in out
        assert "PASS" not in out


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--max-regression", "0.05"], "--max-regression 0.05: give a percentage"),
        (["--max-regression", "-3%"], "--max-regression -3%: must be 0% or more"),
        (["--max-regression", "x%"], "--max-regression x%: not a number"),
    ],
)
def test_a_bad_threshold_is_one_line(runs, capsys, args, names):
    status = _check(runs["same"], runs["base"], *args)
    assert one_line_error(capsys.readouterr().err, status).startswith(names)


def test_a_missing_folder_is_one_line(runs, tmp_path, capsys):
    status = _check(runs["same"], tmp_path / "nope")
    assert one_line_error(capsys.readouterr().err, status).startswith(f"--baseline {tmp_path / 'nope'}: ")
    status = _check(tmp_path, runs["base"])
    assert one_line_error(capsys.readouterr().err, status).startswith(f"RUN {tmp_path}: neither")


def _experiment(
    out: Path,
    name: str,
    all_in: list[float],
    flags: str = "",
    at_rates: dict[float, list[float]] | None = None,
    not_done: tuple[str, ...] = (),
) -> Path:
    """An experiment folder whose cells table holds arm `fixed`'s done repeats with these all-in figures
    (at the arm's own rate, or at each offered rate of `at_rates`), then one cell per `not_done` status
    (at the arm's own rate, no figures yet)."""
    folder = ExperimentFolder.create(out, name, {"name": name})
    rows = []
    cells = [(math.nan, v) for v in all_in] + [(r, v) for r, vs in (at_rates or {}).items() for v in vs]
    for i, (rate, value) in enumerate(cells):
        row: dict[str, object] = {c: None for c in CELL_COLUMNS}
        row.update(
            experiment_id=folder.path.name, cell=i, block=i, repeat=i + 1, rate=rate, arm="fixed",
            position=0, status="done", j_per_request_all_in=value, ttft_p50_s=0.05, e2e_p50_s=0.8,
            flags=flags if i == 0 else "",
        )  # fmt: skip
        rows.append(row)
    for i, status in enumerate(not_done, start=len(rows)):
        row = {c: None for c in CELL_COLUMNS}
        row.update(experiment_id=folder.path.name, cell=i, block=i, repeat=i + 1, rate=math.nan, arm="fixed",
                   position=0, status=status, flags="")  # fmt: skip
        rows.append(row)
    folder.write_cells(pd.DataFrame(rows))
    return folder.path


def test_experiments_compare_over_repeats(tmp_path, runs, capsys):
    base = _experiment(tmp_path, "base", [10.0, 10.4, 9.8, 10.1])
    worse = _experiment(tmp_path, "worse", [12.0, 12.3, 11.9, 12.2])
    noisy = _experiment(tmp_path, "noisy", [9.0, 14.0, 8.0, 13.0])  # mean +10%, but the repeats disagree
    assert _check(worse, base, "--max-regression", "5%") == 1
    assert _check(noisy, base, "--max-regression", "5%") == 0
    assert "inconclusive" in capsys.readouterr().out
    flagged = _experiment(tmp_path, "flagged", [10.0, 10.1, 10.2], flags="power_incomplete")
    assert _check(flagged, base, "--max-regression", "5%") == 1
    assert "FAIL: arm fixed: the candidate is flagged power_incomplete" in capsys.readouterr().out
    status = _check(worse, runs["base"])
    assert "compare like with like" in one_line_error(capsys.readouterr().err, status)


def test_experiments_match_arms_by_offered_rate(tmp_path, capsys):
    base = _experiment(tmp_path, "base", [], at_rates={2.0: [5.0, 5.1, 4.9], 8.0: [3.0, 3.1, 2.9]})
    worse = _experiment(tmp_path, "worse", [], at_rates={2.0: [5.0, 5.1, 4.9], 8.0: [4.0, 4.1, 3.9]})
    assert _check(worse, base, "--max-regression", "5%") == 1
    out = capsys.readouterr().out
    assert "FAIL: regressed by more than 5%: fixed @ 8 req/s J/request (all-in)" in out
    [at_2] = [line for line in out.splitlines() if line.startswith("fixed @ 2 req/s  J/request")]
    assert at_2.rstrip().endswith(" ok")


def test_unfinished_experiments_are_noted_and_fail_under_two_done_repeats(tmp_path, capsys):
    base = _experiment(tmp_path, "base", [10.0, 10.4, 9.8, 10.1])
    partial = _experiment(tmp_path, "partial", [10.0, 10.2, 9.9], not_done=("running", "pending"))
    assert _check(partial, base, "--max-regression", "5%") == 0
    out = capsys.readouterr().out
    assert "note: arm fixed: the candidate has 3 of 5 planned repeats done" in out
    barely = _experiment(tmp_path, "barely", [10.0], not_done=("pending", "pending"))
    assert _check(base, barely, "--max-regression", "5%") == 1
    out = capsys.readouterr().out
    assert "FAIL: arm fixed: the baseline has 1 of 3 planned repeats done, under 2: no interval" in out
    assert "PASS" not in out


def test_a_run_without_power_is_one_line_saying_so(tmp_path, runs, capsys):
    latency_only = build_run(tmp_path, with_power=False)
    status = _check(latency_only, runs["base"])
    assert one_line_error(capsys.readouterr().err, status) == (
        f"{latency_only}: no power source, so no energy to check "
        "(latency-only runs are not supported by check)"
    )
    # With power but not reported yet, reporting it is the right advice.
    unreported = build_run(tmp_path)
    status = _check(unreported, runs["base"])
    assert "joulebench report" in one_line_error(capsys.readouterr().err, status)


@pytest.mark.parametrize("field", ["arms", "run"])
def test_a_summary_without_a_field_is_one_line(tmp_path, runs, capsys, field):
    odd = tmp_path / "odd"
    shutil.copytree(runs["base"], odd)
    summary = json.loads((odd / "summary.json").read_text())
    summary["arms"] = []  # so that "run" is read too
    del summary[field]
    (odd / "summary.json").write_text(json.dumps(summary))
    status = _check(odd, runs["base"])
    assert one_line_error(capsys.readouterr().err, status) == (
        f"{odd / 'summary.json'}: not a summary check can read (no field '{field}')"
    )
