"""The committed H200 experiment (docs/results/arrival-shaping-h200) stays reproducible from its files.

- every done cell's row of cells.parquet is what `cell_figures` reads from the cell's run folder today;
- `joulebench experiment report`'s own code path (`report_experiment`, which builds the document's
  view in harness/experiment/report_writer.py) rebuilds the committed experiment_summary.json from
  the committed cells.parquet and experiment.yaml alone;
- benchmarks/gpu/experiment_page.py rebuilds the committed results page, byte for byte.

When the report code changes on purpose, rebuild the committed files and the page:
    joulebench experiment report docs/results/arrival-shaping-h200/experiment
    python benchmarks/gpu/experiment_page.py docs/results/arrival-shaping-h200 \
        --h100 docs/results/arrival-shaping-h100
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
from harness.runfolder.experiment_files import ExperimentFolder

RESULTS = REPO / "docs" / "results" / "arrival-shaping-h200"
H100 = REPO / "docs" / "results" / "arrival-shaping-h100"
FOLDER = ExperimentFolder.open(RESULTS / "experiment")
CELLS = FOLDER.read_cells()
DONE = CELLS[CELLS["status"] == "done"]


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


def test_the_committed_experiment_is_complete() -> None:
    assert len(CELLS) == 30
    assert len(DONE) == len(CELLS)


@pytest.mark.parametrize("cell", DONE["cell"].astype(int).tolist())
def test_a_cells_row_is_its_run_folders_figures(cell: int) -> None:
    row = DONE[DONE["cell"] == cell].iloc[0]
    figures = cell_figures(FOLDER.path / str(row["run_dir"]), str(row["arm"]), None)
    assert figures, "cell_figures returned nothing"
    differing = {key: (row[key], value) for key, value in figures.items() if not same(row[key], value)}
    assert not differing, f"cell {cell}: committed vs rebuilt {differing}"


def test_the_report_command_rebuilds_the_committed_summary(tmp_path: Path) -> None:
    # The copy keeps the folder's name: the report takes the experiment id from it.
    copy = tmp_path / FOLDER.path.name
    copy.mkdir()
    for name in (FOLDER.SPEC, FOLDER.CELLS, FOLDER.CELLS_CSV):
        shutil.copy2(FOLDER.path / name, copy / name)
    report_experiment(copy, Console(file=io.StringIO(), width=120))
    rebuilt = json.loads((copy / FOLDER.SUMMARY).read_text())
    committed = FOLDER.read_summary()
    assert rebuilt == committed, "experiment_summary.json is stale: run `joulebench experiment report` on it"
    assert sorted(p.name for p in copy.glob("*.png")) == sorted(p.name for p in FOLDER.path.glob("*.png"))


def test_the_page_script_rebuilds_the_committed_page(tmp_path: Path) -> None:
    out = tmp_path / "README.md"
    script = REPO / "benchmarks" / "gpu" / "experiment_page.py"
    done = subprocess.run(
        [sys.executable, str(script), str(RESULTS), "--h100", str(H100), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == (RESULTS / "README.md").read_bytes()
