"""The committed GPU results stay reproducible: `joulebench report` rebuilds every run folder under
docs/results into the same summary.json figures and the same energy.parquet as were committed.
When the analysis changes on purpose, `bash benchmarks/gpu/rebuild_committed.sh` rebuilds them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from joulebench_testkit import run_main

from harness.runfolder.report_files import SUMMARY_FILE, read_energy

RESULTS = Path(__file__).resolve().parent.parent.parent / "docs" / "results"
# Folders committed with their raw data (the mock replays keep only their summaries).
FOLDERS = sorted(p.parent for p in RESULTS.rglob(SUMMARY_FILE) if (p.parent / "requests.parquet").is_file())


def figures(folder: Path) -> dict:
    doc = json.loads((folder / SUMMARY_FILE).read_text())
    doc.pop("generated_utc")  # when the report was made, not what it says
    return doc


def test_there_are_committed_runs() -> None:
    assert len(FOLDERS) >= 3


@pytest.mark.parametrize("committed", FOLDERS, ids=[str(p.relative_to(RESULTS)) for p in FOLDERS])
def test_report_rebuilds_the_committed_figures(tmp_path: Path, committed: Path) -> None:
    copy = tmp_path / committed.name
    shutil.copytree(committed, copy)
    assert run_main(["report", str(copy), "--quiet"]) == 0
    assert figures(copy) == figures(committed)
    rebuilt, method = read_energy(copy)
    original, original_method = read_energy(committed)
    assert method == original_method
    pd.testing.assert_frame_equal(rebuilt, original)
