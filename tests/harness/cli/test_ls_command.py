"""`joulebench ls`, `joulebench run --label` and `<out>/latest`: a real run is listed with its label and
headline, `latest` points at it; runs without (whole) power say why they have no figure; newest first;
folders that are not runs are counted; an experiment is one line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from joulebench_testkit import REPO, one_line_error, run_joulebench, run_main
from synth_runs import build_run

from harness.report import report_run
from harness.runfolder import RunFolder
from harness.runfolder.experiment_files import ExperimentFolder

EXPERIMENT = REPO / "docs" / "results" / "arrival-shaping-h200" / "experiment"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A real embedded run (mock server + simulated sidecar), labelled."""
    out = tmp_path_factory.mktemp("runs")
    done = run_joulebench(
        "run", "--schedule", "fixed:interval=0.5", "--n", "6", "--label", "baseline A", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    return out


def _ls(folder: Path, capsys) -> list[str]:
    assert run_main(["ls", str(folder)]) == 0
    return capsys.readouterr().out.splitlines()


def test_the_run_is_listed_with_its_label_and_headline(runs, capsys) -> None:
    (run,) = [p for p in runs.iterdir() if not p.is_symlink()]
    header, line = _ls(runs, capsys)  # one line for the run: `latest` is not listed again
    summary = json.loads((run / "summary.json").read_text())
    manifest = RunFolder.open(run).manifest()
    assert manifest["label"] == "baseline A"
    (arm,) = summary["arms"]
    started = manifest["clock"]["start_utc"][:19].replace("T", " ")
    assert line.split("  ")[0] == run.name
    for shown in ("baseline A", started, "6/6", f"{arm['name']} {arm['all_in']['j_per_request']:.2f} J"):
        assert shown in line, (shown, line)
    assert header.startswith("folder") and "all-in J/request" in header


def test_latest_points_at_the_run(runs) -> None:
    (run,) = [p for p in runs.iterdir() if not p.is_symlink()]
    assert os.readlink(runs / "latest") == run.name  # relative: still right when runs/ is moved
    assert (runs / "latest" / "summary.json").is_file()


def _started(run: Path, when: str) -> Path:
    folder = RunFolder.open(run)
    folder.update_manifest(clock={"start_utc": when}, label=f"at {when[11:16]}")
    return run


def test_newest_first_each_saying_why_it_has_no_figure(tmp_path, capsys) -> None:
    no_power = _started(build_run(tmp_path, with_power=False), "2026-01-01T10:00:00+00:00")
    cut = _started(build_run(tmp_path, power_end_s=25.0), "2026-01-01T12:00:00+00:00")
    report_run(cut, html=False)
    unreported = _started(build_run(tmp_path), "2026-01-01T11:00:00+00:00")
    (tmp_path / "notes").mkdir()
    (tmp_path / "arms.parquet").write_text("")  # files are no folders: not counted
    experiment = tmp_path / "shaping"
    experiment.mkdir()
    for name in ("experiment.yaml", "cells.parquet"):
        shutil.copy(EXPERIMENT / name, experiment / name)
    os.utime(experiment, (0, 0))  # its cells' start times order it (2026-12-03), not the folder's
    _, *lines, skipped = _ls(tmp_path, capsys)
    assert [line.split()[0] for line in lines] == ["shaping", cut.name, unreported.name, no_power.name]
    shaping, cut_line, unreported_line, no_power_line = lines
    assert "30/30 cells done" in shaping and "arrival-shaping-h200" in shaping
    assert "fixed " in cut_line and "bursty incomplete" in cut_line and "power_incomplete" in cut_line
    assert "not reported (joulebench report)" in unreported_line
    assert "no power" in no_power_line and "at 10:00" in no_power_line
    assert skipped == "(1 folder that is not a run or experiment skipped)"


def test_a_missing_folder_is_one_line(tmp_path, capsys) -> None:
    status = run_main(["ls", str(tmp_path / "nothing")])
    assert one_line_error(capsys.readouterr().err, status) == f"{tmp_path / 'nothing'}: no such folder"


@pytest.mark.parametrize("label", ["two\nlines", " ", "x" * 201])
def test_a_bad_label_is_one_line_and_writes_nothing(label, tmp_path, capsys) -> None:
    status = run_main(["run", "--label", label, "--out", str(tmp_path / "runs")])
    message = one_line_error(capsys.readouterr().err, status)
    assert message.startswith(f"--label {label!r}: expected one line of printable text")
    assert not (tmp_path / "runs").exists()


def test_latest_is_listed_under_the_runs_own_name(runs, capsys) -> None:
    (run,) = [p for p in runs.iterdir() if not p.is_symlink()]
    _, line = _ls(runs / "latest", capsys)
    assert line.split("  ")[0] == run.name


def test_the_label_is_among_the_reports_facts(runs) -> None:
    (run,) = [p for p in runs.iterdir() if not p.is_symlink()]
    assert '<tr id="run-label"><th>label</th><td>baseline A</td></tr>' in (run / "report.html").read_text()


def test_a_folder_that_cannot_be_looked_into_is_listed_with_why(tmp_path, capsys) -> None:
    """Here its files' names are longer than the system allows (as root, a folder without permissions
    would still be readable): it is listed as unreadable, and the run beside it still is."""
    limit = os.pathconf(tmp_path, "PC_PATH_MAX")  # a path's bytes, with the terminating NUL
    deep = tmp_path
    while (room := limit - 100 - len(str(deep)) - 1) > 0:  # room left for the run's own files
        deep = deep / ("d" * min(room, 200))
    deep.mkdir(parents=True)
    run = _started(build_run(deep, with_power=False), "2026-01-01T10:00:00+00:00")
    stuck = deep / ("r" * (limit - 10 - len(str(deep)) - 1))  # itself a name, its manifest.json not
    stuck.mkdir()
    _, *lines = _ls(deep, capsys)
    assert [line.split()[0] for line in lines] == [run.name, stuck.name]
    assert lines[1].endswith("unreadable: File name too long") and "no power" in lines[0]


def test_what_a_manifest_does_not_say_is_a_question_mark(tmp_path, capsys) -> None:
    run = build_run(tmp_path, with_power=False)
    RunFolder.open(run).update_manifest(records={"status_counts": {"ok": 38}})  # no row count
    _, line = _ls(tmp_path, capsys)
    assert " 38/? " in line


def test_an_experiment_began_when_its_first_cell_did_whatever_the_offset(tmp_path, capsys) -> None:
    experiment = tmp_path / "shaping"
    experiment.mkdir()
    for name in ("experiment.yaml", "cells.parquet"):
        shutil.copy(EXPERIMENT / name, experiment / name)
    folder = ExperimentFolder.open(experiment)
    cells = folder.read_cells()
    assert cells["started_utc"].min() > "2026-12-03T00"  # the committed cells: all later, all in UTC
    cells.loc[len(cells) - 1, "started_utc"] = "2026-12-03T02:00:00+02:00"  # first, at 00:00 UTC
    folder.write_cells(cells)
    _, line = _ls(experiment, capsys)
    assert "2026-12-03 00:00:00" in line
