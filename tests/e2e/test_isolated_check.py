"""The isolated-request check of docs/results/gpu/isolated-h200 (benchmarks/gpu/isolated_check.py) prints
what its README quotes, from the committed run folder: the lines are computed, not typed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "results" / "gpu" / "isolated-h200"


@pytest.mark.parametrize("lag", ["auto", "off"])
def test_the_readme_quotes_the_check_output(lag: str) -> None:
    script = REPO / "benchmarks" / "gpu" / "isolated_check.py"
    done = subprocess.run(
        [sys.executable, str(script), str(RESULTS / "run"), "--power-lag", lag],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    verdicts = [line for line in lines if re.match(r"(power lag|time|steps)\b", line)]
    assert len(verdicts) == 3, done.stdout + done.stderr
    readme = (RESULTS / "README.md").read_text()
    for line in verdicts:
        assert line in readme, line
    assert done.returncode == 1  # `time` fails the acceptance on this run (the README says why)
