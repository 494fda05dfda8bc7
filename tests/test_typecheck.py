"""The type check (scripts/typecheck.py, which ./scripts/test.sh runs on the tree): a new error fails,
the core takes no baseline entries, and the baseline only ever shrinks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def typecheck(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "typecheck.py"), *args],
        cwd=root,
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_a_new_error_fails_and_the_baseline_only_shrinks(tmp_path: Path) -> None:
    for name in ("foundation", "traffic", "harness", "joulebench", "scripts"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    # The copy's own errors as its baseline, so the test checks the mechanism whatever the tree holds.
    mypy = "[sys.executable, '-m', 'mypy']"
    seed = f"import sys, typecheck; typecheck.write_baseline(typecheck.current_errors({mypy}))"
    subprocess.run(
        [sys.executable, "-c", seed], cwd=tmp_path, env={**os.environ, "PYTHONPATH": "scripts"}, check=True
    )
    baseline = tmp_path / "mypy-baseline.txt"
    before = baseline.read_text()
    assert typecheck(tmp_path).returncode == 0

    core = tmp_path / "traffic" / "arrivals.py"
    original = core.read_text()
    core.write_text(original + '\n\ndef _broken() -> int:\n    return "not an int"\n')
    done = typecheck(tmp_path)
    assert done.returncode == 1
    assert "new type error: traffic/arrivals.py: [return-value]" in done.stdout
    core.write_text(original)

    baseline.write_text(before + "traffic/arrivals.py: [misc] an error the core may not keep\n")
    done = typecheck(tmp_path)
    assert done.returncode == 1 and "the core takes no baseline entries: traffic/arrivals.py" in done.stdout

    baseline.write_text(before + "harness/cli/app.py: [misc] an error that was fixed\n")
    done = typecheck(tmp_path)
    assert done.returncode == 1 and "take it out" in done.stdout
    assert typecheck(tmp_path, "--shrink").returncode == 0
    assert sorted(baseline.read_text().splitlines()) == sorted(before.splitlines())
    assert typecheck(tmp_path).returncode == 0
