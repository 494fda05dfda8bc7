"""The isolated-request checks of docs/results/gpu/isolated-h200 and isolated-transformers-h200
(benchmarks/gpu/isolated_check.py) print what their READMEs quote, from the committed run folders: the
lines are computed, not typed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GPU_RESULTS = REPO / "docs" / "results" / "gpu"


# (folder, --power-lag, exit status): vLLM's `time` fails the acceptance (its README says why); on
# transformers both splits pass.
@pytest.mark.parametrize(
    ("folder", "lag", "status"),
    [("isolated-h200", "auto", 1), ("isolated-h200", "off", 1), ("isolated-transformers-h200", "auto", 0)],
)
def test_the_readme_quotes_the_check_output(folder: str, lag: str, status: int) -> None:
    results = GPU_RESULTS / folder
    script = REPO / "benchmarks" / "gpu" / "isolated_check.py"
    done = subprocess.run(
        [sys.executable, str(script), str(results / "run"), "--power-lag", lag],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    verdicts = [line for line in lines if re.match(r"(power lag|time|steps)\b", line)]
    assert len(verdicts) == 3, done.stdout + done.stderr
    readme = (results / "README.md").read_text()
    for line in verdicts:
        assert line in readme, line
    assert done.returncode == status
