"""`joulebench experiment run|resume|report` on the embedded mock, as a user runs them.

- acceptance: 3 arms x 3 rates x 4 repeats from one YAML file, killed (SIGKILL) part-way: the mock and
  the sidecar die with it, `resume` runs only what is missing (the cut-short cell again, its partial
  folder moved to abandoned/, no done cell twice, done rows untouched), and the result has the same
  design, plans and request counts as the same file run without a break;
- known truth: two identical arms under host drift are "not distinguishable" (their interval covers
  zero), a much cheaper arm is named the winner against both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from e2e_stack import output
from joulebench_testkit import alive, joulebench_argv, run_joulebench, run_main

from foundation.errors import InputError
from harness.energy.repeats import EXCLUDING_FLAGS, excluded
from harness.runfolder.experiment_files import CELL_COLUMNS, ExperimentFolder

pytestmark = pytest.mark.slow

ACCEPTANCE = """\
name: accept
target: embedded
plan: {prompts: synthetic, n: 4, max_tokens: 4, ignore_eos: true}
arms:
  - fixed:interval=0.25,name=fixed
  - bursty:size=2,intra=0.01,gap=0.5,name=bursty
  - uniform:low=0.1,high=0.4,name=uniform
rates: [8, 12, 16]
repeats: 4
cooldown_s: 0.2
cell_reports: false
slo_ttft_s: 1
"""
CELLS = 36
KILL_AFTER = 12  # done cells before the SIGKILL
DESIGN = ["cell", "block", "repeat", "rate", "arm", "position", "previous_arm", "plan_hash", "requests",
          "ok", "status"]  # fmt: skip


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of every live process whose parent is `pid`."""
    found: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found[int(stat.parent.name)] = cmdline
        except (OSError, ValueError, IndexError):
            continue  # gone while we looked
    return found


def _experiment(out: Path) -> ExperimentFolder:
    (path,) = out.iterdir()
    return ExperimentFolder(path)


def _cells(out: Path) -> pd.DataFrame | None:
    """The table as the running experiment last wrote it (None before there is one)."""
    folders = list(out.iterdir()) if out.is_dir() else []
    if len(folders) != 1 or not ExperimentFolder(folders[0]).has_cells():
        return None
    try:
        return ExperimentFolder(folders[0]).read_cells()
    except InputError:
        # The writer replaces the file atomically, but pyarrow takes the file's size and then opens it
        # by name: a replace in between reads the new file at the old size. Read again next time.
        return None


def _normalized(frame: pd.DataFrame) -> list[tuple]:
    """Rows with missing values as None and numbers as floats: how a CSV and a Parquet row compare."""

    def value(v):
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return None
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            return float(v)
        return str(v)

    return [tuple(value(v) for v in row) for row in frame.itertuples(index=False, name=None)]


def _mid_cell(out: Path) -> bool:
    """KILL_AFTER cells are done and the next one is sending: its run folder has its request log."""
    cells = _cells(out)
    if cells is None or (cells["status"] == "done").sum() < KILL_AFTER:
        return False
    running = cells[cells["status"] == "running"]
    return (
        len(running) == 1
        and (_experiment(out).runs / str(running["run_id"].iloc[0]) / "requests.jsonl").is_file()
    )


def _kill_part_way(exp: Path, out: Path, log: Path) -> tuple[pd.DataFrame, dict[int, str]]:
    """Start the experiment and SIGKILL it (by its handle) in the middle of a cell after KILL_AFTER are
    done; the table as it was left, and the embedded stack's processes (pid -> command line)."""
    with log.open("w") as sink:
        proc = subprocess.Popen(
            joulebench_argv("experiment", "run", str(exp), "-o", str(out)), cwd=exp.parent,
            stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            tail = log.read_text()[-3000:]
            assert proc.poll() is None, f"the experiment ended before the kill:\n{tail}"
            assert time.monotonic() < deadline, f"no {KILL_AFTER} done cells in time:\n{tail}"
            if _mid_cell(out):
                # Frozen, the table cannot change under the check: still mid-cell, then kill it there.
                proc.send_signal(signal.SIGSTOP)
                if _mid_cell(out):
                    stack = _children(proc.pid)
                    proc.kill()
                    break
                proc.send_signal(signal.SIGCONT)
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    return _experiment(out).read_cells(), stack


def test_experiment_killed_then_resumed_equals_one_run_without_a_break(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(ACCEPTANCE)
    killed_out, whole_out = tmp_path / "killed", tmp_path / "whole"

    # --- run, SIGKILL part-way ----------------------------------------------------------------------
    before, stack = _kill_part_way(exp, killed_out, tmp_path / "killed.log")
    assert sorted(" ".join(cmd.split()[3:4]) for cmd in stack.values()) == ["mock-server", "sidecar"], stack
    deadline = time.monotonic() + 20  # they get SIGTERM when joulebench dies (PR_SET_PDEATHSIG)
    while any(alive(pid) for pid in stack) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in stack), f"left running after the kill: {stack}"
    folder = _experiment(killed_out)
    done_before = before[before["status"] == "done"].sort_values("cell").reset_index(drop=True)
    running = before[before["status"] == "running"]
    assert len(done_before) >= KILL_AFTER and len(running) == 1, before[["cell", "status"]]
    partial = str(running["run_id"].iloc[0])
    assert (folder.runs / partial).is_dir()
    assert not (folder.path / "report.html").exists()

    # --- resume -------------------------------------------------------------------------------------
    resumed = run_joulebench("experiment", "resume", str(folder.path), cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, output(resumed)
    assert f"resuming {folder.experiment_id}: {CELLS - len(done_before)} of {CELLS} cells to run" in (
        resumed.stderr
    )
    after = folder.read_cells().sort_values("cell").reset_index(drop=True)
    assert len(after) == CELLS and set(after["status"]) == {"done"}
    assert after["cell"].tolist() == list(range(CELLS))
    # The rows done before the kill are exactly as they were, every column.
    unchanged = after[after["cell"].isin(done_before["cell"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(unchanged, done_before, check_exact=True)
    # The cut-short cell ran again; its partial folder went to abandoned/.
    assert [p.name for p in (folder.path / "abandoned").iterdir()] == [partial]
    assert (folder.path / "abandoned" / partial / "requests.jsonl").is_file()
    assert f"cell {partial}: its earlier, unfinished run folder moved to" in resumed.stderr
    # No done cell ran twice: one run folder per cell, each the one its row names.
    runs = sorted(p.name for p in folder.runs.iterdir())
    assert len(runs) == CELLS and runs == sorted(after["run_id"])
    assert (after["run_dir"] == "runs/" + after["run_id"]).all()
    assert (after["ok"] == after["requests"]).all() and set(after["requests"]) == {4}
    assert after["j_per_request_all_in"].notna().all() and (after["j_per_request_all_in"] > 0).all()
    _check_outputs(folder, after)

    # --- the same file without a break --------------------------------------------------------------
    whole = run_joulebench("experiment", "run", str(exp), "-o", str(whole_out), cwd=tmp_path, timeout=300)
    assert whole.returncode == 0, output(whole)
    other = _experiment(whole_out)
    uninterrupted = other.read_cells().sort_values("cell").reset_index(drop=True)
    # Same design, and the same plans (plan_hash: common random numbers), the same requests.
    pd.testing.assert_frame_equal(after[DESIGN], uninterrupted[DESIGN], check_exact=True)
    assert not (other.path / "abandoned").exists()
    # The figures differ by wall-clock timing only: each (arm, rate) mean over repeats agrees loosely.
    metric = "j_per_request_all_in"
    a = after.groupby(["arm", "rate"])[metric].mean()
    b = uninterrupted.groupby(["arm", "rate"])[metric].mean()
    relative = ((a - b).abs() / b).max()
    assert relative < 0.3, pd.concat({"resumed": a, "whole": b}, axis=1)

    # `experiment report` rebuilds the report from the table alone.
    summary = other.read_summary()
    for name in ("report.html", "experiment_summary.json", "sweep.png"):
        (other.path / name).unlink()
    rebuilt = run_joulebench("experiment", "report", str(other.path), cwd=tmp_path)
    assert rebuilt.returncode == 0, output(rebuilt)
    assert other.read_summary() == summary
    assert (other.path / "report.html").is_file() and (other.path / "sweep.png").is_file()


def _check_outputs(folder: ExperimentFolder, cells: pd.DataFrame) -> None:
    """cells.csv holds the rows of cells.parquet; the report, its summary and the rate sweep exist."""
    csv = pd.read_csv(folder.path / folder.CELLS_CSV)
    assert list(csv.columns) == list(CELL_COLUMNS)
    parquet = folder.read_cells()
    assert _normalized(csv) == _normalized(parquet[list(CELL_COLUMNS)])
    # The SLO reached every cell's run: goodput is a share; unshaped arms hold nothing.
    assert parquet["goodput_share"].between(0, 1).all(), parquet["goodput_share"]
    assert (parquet["hold_p99_ms"] < 5).all() and parquet["user_ttft_p50_s"].notna().all()
    for name in ("report.html", "experiment_summary.json", "sweep.png"):
        assert (folder.path / name).is_file(), name
    assert (folder.path / "sweep.png").read_bytes().startswith(b"\x89PNG")
    doc = json.loads((folder.path / folder.SUMMARY).read_text())
    assert doc["counts"] == {"total": CELLS, "done": CELLS, "pending": 0, "running": 0}
    assert doc["arms"] == ["fixed", "bursty", "uniform"]
    assert [block["rate"] for block in doc["rates"]] == [8.0, 12.0, 16.0]
    assert sorted(c["cell"] for c in doc["cells"]) == sorted(cells["cell"])
    assert folder.experiment_id in (folder.path / "report.html").read_text()


KNOWN_TRUTH = """\
name: truth
target: {kind: embedded, mock_args: [--set, step_time.drift_cv=0.1, --set, step_time.drift_time_s=5]}
plan: {prompts: synthetic, n: 4, max_tokens: 8, ignore_eos: true}
arms:
  - fixed:interval=0.25,name=a
  - fixed:interval=0.25,name=b
  - bursty:size=4,intra=0,gap=1,name=burst
rates: [8]
repeats: 5
level: 0.99
cooldown_s: 0.2
cell_reports: false
"""


@pytest.mark.alone  # a cell with one send over its bound leaves the comparison
def test_identical_arms_are_not_distinguishable_and_a_much_cheaper_arm_wins(tmp_path, capsys) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(KNOWN_TRUTH)
    status = run_main(["experiment", "run", str(exp), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 0, err
    folder = _experiment(tmp_path / "out")
    cells = folder.read_cells()
    assert len(cells) == 15 and set(cells["status"]) == {"done"}
    # A cell leaves the comparison only for a stall of the host that its run flagged (4 sends each: one
    # stall over the bound is p99), never for failed requests or missing power; one such cell at most.
    out = excluded(cells)
    shown = cells[["repeat", "arm", "lateness_p99_ms", "flags"]].to_string()
    assert out.sum() <= 1, shown
    codes = {code for flags in cells.loc[out, "flags"] for code in flags.split(",")} & set(EXCLUDING_FLAGS)
    assert codes <= {"lateness_over_bound", "loop_lag_over_bound"}, shown
    # The drift makes repeats differ: the twins are not equal in every repeat.
    twins = cells[cells["arm"].isin(["a", "b"])].pivot(
        index="repeat", columns="arm", values="j_per_request_all_in"
    )
    assert (twins["a"] != twins["b"]).any()
    doc = folder.read_summary()
    assert doc["level"] == 0.99 and doc["metric"] == "j_per_request_all_in"
    (block,) = doc["rates"]
    pairs = {
        (p["a"], p["b"]): (p, line)
        for p, line in zip(block["pairs"][doc["metric"]], block["verdict"], strict=True)
    }
    assert set(pairs) == {("a", "b"), ("a", "burst"), ("b", "burst")}
    same, line = pairs[("a", "b")]
    assert same["repeats"] >= 4 and same["ci"] is not None, shown
    assert same["ci"][0] <= 0 <= same["ci"][1], same
    assert not same["distinguishable"] and same["winner"] is None
    assert line.startswith("a vs b: not distinguishable"), line
    for twin in ("a", "b"):
        pair, line = pairs[(twin, "burst")]
        assert pair["distinguishable"] and pair["winner"] == "burst", pair
        assert pair["ci"][0] > 0  # twin − burst: the burst costs less
        assert line.startswith(f"burst is lower than {twin} by "), line
