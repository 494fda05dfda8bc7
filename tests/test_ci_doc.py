"""docs/ci.md's GitHub Actions workflow, run here: its baseline commands, then every `run:` step of the
workflow in order, in a fresh folder with this interpreter's venv on PATH, so the page cannot rot.

`uses:` steps are GitHub's own actions (checkout, setup-python, upload-artifact) and are skipped, as is
the install step: the venv on PATH is what it installs (checked to be `pip install` of joulebench).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from joulebench_testkit import REPO

DOC = (REPO / "docs" / "ci.md").read_text()


def _fenced(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)


def _workflow() -> dict:
    [workflow] = [yaml.safe_load(block) for block in _fenced("yaml") if "jobs:" in block]
    return workflow


def _sh(command: str, cwd: Path, env: dict[str, str]) -> None:
    # GitHub's default shell for `run:` on Linux.
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", command],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"{command}\nexit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )


def test_the_workflow_measures_checks_and_uploads(tmp_path):
    [job] = _workflow()["jobs"].values()
    steps = job["steps"]
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    env.pop("COLUMNS", None)
    [install] = [s for s in steps if s.get("id") == "install"]
    assert "pip install" in install["run"]
    runs = [s for s in steps if "run" in s and s is not install]
    [measure] = [s["run"] for s in runs if s["run"].startswith("joulebench run ")]
    assert any(s["run"].startswith("joulebench check ") for s in runs)

    # The baseline, as the page says to make it: with the workflow's own measurement command.
    [baseline] = [block for block in _fenced("bash") if "ci/joulebench-baseline" in block]
    lines = [line for line in baseline.splitlines() if line.strip()]
    assert lines[0] == measure
    _sh(baseline, tmp_path, env)

    for step in runs:
        _sh(step["run"], tmp_path, {**env, **{k: str(v) for k, v in step.get("env", {}).items()}})
    [upload] = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert upload.get("if") == "always()"
    uploaded = tmp_path / upload["with"]["path"]
    assert len([p for p in uploaded.iterdir() if p.is_dir() and not p.is_symlink()]) == 2  # both runs
