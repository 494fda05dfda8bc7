"""docs/results/reanalysis-h100-h200 (issue 16's re-analysis) is what benchmarks/gpu/reanalysis.py computes
from the committed raw runs: the H100 section is rebuilt here (the H200 one takes ~90 joins; the same
code writes it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_h100_section_is_rebuilt_from_the_raw_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu" / "reanalysis.py"), "--only", "h100"],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=True,
    )  # fmt: skip
    page = (REPO / "docs" / "results" / "reanalysis-h100-h200" / "README.md").read_text()
    assert done.stdout.strip() and done.stdout.strip() in page
