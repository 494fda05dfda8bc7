"""The layer contracts ([tool.importlinter] in pyproject.toml) hold, and each one catches what it forbids.

Each case copies the packages into a temporary folder, adds one import that breaks one rule, and runs
`lint-imports` there with the project's own contracts: it must fail and name the broken contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("foundation", "traffic", "harness", "joulebench")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # The packages under `root` come first on the path, ahead of the installed (editable) ones.
    env = {**os.environ, "PYTHONPATH": str(root)}
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", script, "--no-cache"], cwd=root, env=env, capture_output=True, text=True
    )


def test_the_tree_keeps_every_contract() -> None:
    # ./scripts/test.sh runs lint-imports too; this is the control for the cases below.
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("traffic/describe.py", "import harness.clock", "harness uses traffic"),
        ("foundation/errors.py", "import traffic.plan", "harness uses traffic"),
        ("harness/report/format.py", "import harness.session.pipeline", "harness layers"),
        ("harness/runfolder/folder.py", "import harness.runner.execute", "harness layers"),
        ("traffic/arrivals.py", "import httpx", "traffic is pure"),
        ("harness/backends/sse.py", "import traffic.plan", "backends only speak a protocol"),
        ("harness/energy/stats.py", "import httpx", "the energy join imports nothing"),
        (
            "harness/energy/flags.py",
            "import harness.power.sources.promapi",
            "the energy join imports nothing",
        ),
        ("harness/report/format.py", "import harness.power.sources.promapi", "reports read run folders"),
        ("harness/report/format.py", "import pyarrow.parquet", "reports open no file themselves"),
        ("harness/energy/grid.py", "import harness.power.sampler", "the energy join imports nothing"),
        ("harness/records.py", "import traffic.plan", "backends only speak a protocol"),
        ("harness/mock/asgi.py", "import harness.backends.sse", "the mock server imports no client code"),
        ("harness/shaping_proxy/proxy_relay.py", "import harness.runfolder.request_log", "harness layers"),
        ("harness/experiment/design.py", "import pandas", "an experiment's design is pure"),
        ("harness/session/pipeline.py", "import harness.experiment.conduct", "harness layers"),
        (
            "harness/session/pipeline.py",
            "import joulebench.api_run",
            "joulebench (the Python API) uses harness",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / module).open("a") as f:
        f.write(f"\n{line}  # noqa: E402, F401\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    broken = done.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, done.stdout
