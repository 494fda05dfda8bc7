"""scripts/test.sh's two phases: `--alone` (tests/conftest.py) leaves the tests marked `alone` out of the
parallel phase and runs only them in the second, composing with the caller's own -k (or -m)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from joulebench_testkit import REPO

FILES = ["tests/e2e/test_shaped_mock.py", "tests/harness/runner/test_options.py"]


def _collected(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args, *FILES],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode in (0, 5), done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if "::" in line]


@pytest.mark.parametrize(
    ("args", "shaped", "options"),
    [((), True, True), (("--alone=skip",), False, True), (("--alone=only",), True, False),
     (("--alone=only", "-k", "cap"), True, False)],
    ids=["with-others", "skip", "only", "only and -k"],
)  # fmt: skip
def test_alone_splits_the_marked_tests_from_the_others(args, shaped, options) -> None:
    ids = _collected(*args)
    assert any(i.startswith(FILES[0]) for i in ids) is shaped, ids
    assert any(i.startswith(FILES[1]) for i in ids) is options, ids
    if "-k" in args:
        assert ids and all("cap" in i for i in ids), ids
