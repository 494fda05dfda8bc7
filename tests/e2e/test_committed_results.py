"""The committed GPU results stay reproducible: `joulebench report` rebuilds every run folder under
docs/results into the same summary.json figures and the same energy.parquet as were committed.
When the analysis changes on purpose, `bash benchmarks/gpu/rebuild_committed.sh` rebuilds them."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from joulebench_testkit import run_main

from harness.runfolder.report_files import SUMMARY_FILE, read_energy

RESULTS = Path(__file__).resolve().parent.parent.parent / "docs" / "results"
# Folders committed with their raw data (the mock replays keep only their summaries).
FOLDERS = sorted(p.parent for p in RESULTS.rglob(SUMMARY_FILE) if (p.parent / "requests.parquet").is_file())


def same_figures(rebuilt: object, committed: object, where: str = "summary") -> bool:
    """Equal, with floats equal to 1e-9 relative: the numerical libraries a fresh install brings may
    round the last bits of a sum otherwise (numpy's pairwise sums change with its version), which
    is not a change of the analysis. Anything else (a key, a flag, a count, a string) must match."""
    if isinstance(rebuilt, float) and isinstance(committed, float):
        assert math.isclose(rebuilt, committed, rel_tol=1e-9, abs_tol=1e-12), (where, rebuilt, committed)
    elif isinstance(rebuilt, dict) and isinstance(committed, dict):
        assert rebuilt.keys() == committed.keys(), where
        for key in rebuilt:
            same_figures(rebuilt[key], committed[key], f"{where}.{key}")
    elif isinstance(rebuilt, list) and isinstance(committed, list):
        assert len(rebuilt) == len(committed), where
        for i, (a, b) in enumerate(zip(rebuilt, committed, strict=True)):
            same_figures(a, b, f"{where}[{i}]")
    else:
        assert rebuilt == committed and type(rebuilt) is type(committed), (where, rebuilt, committed)
    return True


def test_same_figures_allows_last_bits_only() -> None:
    assert same_figures({"a": [0.1 + 0.2, 1]}, {"a": [0.3, 1]})
    for changed in ({"a": [0.3000001, 1]}, {"a": [0.3, 2]}, {"a": [0.3]}, {"b": [0.3, 1]}):
        with pytest.raises(AssertionError):
            same_figures({"a": [0.3, 1]}, changed)


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
    assert same_figures(figures(copy), figures(committed))
    rebuilt, method = read_energy(copy)
    original, original_method = read_energy(committed)
    assert method == original_method
    pd.testing.assert_frame_equal(rebuilt, original)
