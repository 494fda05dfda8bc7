"""The committed GPU experiments stay reproducible from their files: docs/results/arrival-shaping-h200
(six schedules), docs/results/shaping-h200 (eight shaping policies at two rates, with the same file
on the mock in its mock/ folder) and docs/results/engines-h200/vllm (the six schedules on vLLM).

- every done cell's row of cells.parquet is what `cell_figures` reads from the cell's run folder today;
- `joulebench experiment report`'s own code path (`report_experiment`, which builds the document's
  view in harness/experiment/report_writer.py) rebuilds each committed experiment_summary.json from
  the committed cells.parquet and experiment.yaml alone;
- benchmarks/gpu/experiment_page.py and shaping_page.py rebuild the committed results pages, byte for byte.

When the report code changes on purpose, rebuild the committed files and the pages (every run folder,
then each experiment with --refigure, then the pages):
    bash benchmarks/gpu/rebuild_committed.sh
"""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from joulebench_testkit import REPO
from rich.console import Console

from harness.experiment.cell_figures import cell_figures
from harness.experiment.start import report_experiment
from harness.runfolder.experiment_files import ADDED_CELL_COLUMNS, ExperimentFolder

RESULTS = REPO / "docs" / "results"
SCHEDULES, POLICIES = RESULTS / "arrival-shaping-h200", RESULTS / "shaping-h200"
ENGINES = RESULTS / "engines-h200"
# folder -> cells it holds (all done)
FOLDERS = {
    SCHEDULES / "experiment": 30,
    POLICIES / "experiment": 48,
    POLICIES / "mock": 48,
    ENGINES / "vllm" / "experiment": 18,
}
# results page -> the command that writes it (the script's arguments)
PAGES = {
    SCHEDULES: ["experiment_page.py", str(SCHEDULES), "--h100", str(RESULTS / "arrival-shaping-h100")],
    POLICIES: ["shaping_page.py", str(POLICIES)],
}
WITH_RUNS = [path for path in FOLDERS if (path / "runs").is_dir()]


def _done(path: Path) -> pd.DataFrame:
    cells = ExperimentFolder.open(path).read_cells()
    return cells[cells["status"] == "done"]


CELL_CASES = [(path, int(c)) for path in WITH_RUNS for c in _done(path)["cell"]]


def same(committed: Any, rebuilt: Any) -> bool:
    """Equal, NaN-aware (a missing value in the table is NaN or <NA>), floats to 1e-12 relative."""
    missing = (
        committed is None or committed is pd.NA or (isinstance(committed, float) and math.isnan(committed))
    )
    if rebuilt is None or (isinstance(rebuilt, float) and math.isnan(rebuilt)):
        return missing
    if missing:
        return False
    if isinstance(rebuilt, float):
        return math.isclose(float(committed), rebuilt, rel_tol=1e-12, abs_tol=0.0)
    return bool(committed == rebuilt)


@pytest.mark.parametrize("path", FOLDERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_committed_experiment_is_complete(path: Path) -> None:
    cells = ExperimentFolder.open(path).read_cells()
    assert len(cells) == FOLDERS[path] == len(_done(path))


@pytest.mark.parametrize(
    ("path", "cell"), CELL_CASES, ids=lambda v: v.parent.name if isinstance(v, Path) else str(v)
)
def test_a_cells_row_is_its_run_folders_figures(path: Path, cell: int) -> None:
    done = _done(path)
    row = done[done["cell"] == cell].iloc[0]
    figures = cell_figures(path / str(row["run_dir"]), str(row["arm"]), None)
    assert figures, "cell_figures returned nothing"
    # A table written before the shaping columns holds them as nulls in every row: not compared there.
    older = {k for k in ADDED_CELL_COLUMNS if done[k].isna().all()}
    written = {k: v for k, v in figures.items() if k not in older}
    differing = {key: (row[key], value) for key, value in written.items() if not same(row[key], value)}
    assert not differing, f"cell {cell}: committed vs rebuilt {differing}"


@pytest.mark.parametrize("path", FOLDERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_report_command_rebuilds_the_committed_summary(path: Path, tmp_path: Path) -> None:
    folder = ExperimentFolder.open(path)
    # The copy keeps the folder's name: the report takes the experiment id from it.
    copy = tmp_path / folder.path.name
    copy.mkdir()
    for name in (folder.SPEC, folder.CELLS, folder.CELLS_CSV):
        shutil.copy2(folder.path / name, copy / name)
    report_experiment(copy, Console(file=io.StringIO(), width=120))
    rebuilt = json.loads((copy / folder.SUMMARY).read_text())
    assert rebuilt == folder.read_summary(), f"{path}/experiment_summary.json is stale: rebuild it (above)"
    assert sorted(p.name for p in copy.glob("*.png")) == sorted(p.name for p in folder.path.glob("*.png"))


@pytest.mark.parametrize("results", PAGES, ids=lambda p: p.name)
def test_the_page_script_rebuilds_the_committed_page(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "README.md"
    script, *args = PAGES[results]
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu" / script), *args, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == (results / "README.md").read_bytes()
