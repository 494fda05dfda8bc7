"""Values that once crashed whole commands with a traceback (some after making a run folder): each is now
one `joulebench: error:` line naming the flag or file, exit status 2, and nothing is left behind.

Run as a user runs them (`python -m harness` subprocesses), each from an empty folder of its own that
must stay empty; all of them once, side by side, then checked one test per case.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from joulebench_testkit import one_line_error, run_joulebench, side_by_side

pytestmark = pytest.mark.slow

SURROGATE_PROMPTS = '{"prompt": "fine"}\n{"prompt": "hi \\ud800 there"}\n'
RUN = ("run", "--prompts", "synthetic", "--schedule", "poisson:rate=5", "--no-progress", "--out", "runs")
BUILD = ("plan", "build", "--prompts", "synthetic", "--schedule", "poisson:rate=5", "--out", "p.parquet")
LONG = "x" * 300  # longer than a file name may be (NAME_MAX): a path that cannot exist


CASES = [
    ((*BUILD, "--n", "10000000000"), "--n: at most 10,000,000 requests per arm, got 10,000,000,000"),
    ((*BUILD, "--n", "1000000000"), "--n: at most 10,000,000 requests per arm, got 1,000,000,000"),
    ((*BUILD, "--n", "1e10"), "--n: Input should be a valid integer"),
    ((*RUN, "--n", "10000000000"), "--n: at most 10,000,000 requests per arm"),
    ((*RUN, "--n", "1000000000"), "--n: at most 10,000,000 requests per arm"),
    (
        ("plan", "build", "--prompts", "prompts.jsonl", "--n", "2", "--out", "p.parquet"),
        "prompts.jsonl: line 2: prompt: holds a lone surrogate (\\ud800)",
    ),
    (
        ("run", "--prompts", "prompts.jsonl", "--n", "2", "--no-progress", "--out", "runs"),
        "prompts.jsonl: line 2: prompt: holds a lone surrogate (\\ud800)",
    ),
    (
        (*RUN, "--n", "2", "--target", "http://127.0.0.1:99999"),
        "--target 'http://127.0.0.1:99999': not a valid URL (Port out of range 0-65535)",
    ),
    ((*RUN, "--n", "2", "--start-at", "nan"), "--start-at nan: expected epoch seconds, a finite number"),
    ((*RUN, "--n", "2", "--start-at", "inf"), "--start-at inf: expected epoch seconds, a finite number"),
    (
        ("mock-server", "--port", "0", "--speed", "inf"),
        "--speed: expected a finite number of simulated seconds per second, got inf",
    ),
    (
        ("mock-server", "--port", "0", "--spike-s", "inf"),
        "profile 'h100-vllm0.26-llama3.2-1b': faults.spike_s: Input should be a finite number",
    ),
    (("recover", LONG), f"{LONG}: cannot open the run folder (File name too long)"),
    (("merge", LONG), f"{LONG}: cannot open the run folder (File name too long)"),
    (("plan", "describe", LONG), f"{LONG}: cannot open the plan file (File name too long)"),
    (("experiment", "report", LONG), f"{LONG}: cannot open the experiment folder (File name too long)"),
    (("report", LONG), f"{LONG}: cannot open the run folder (File name too long)"),
    (("compare", LONG), f"{LONG}: cannot open the run folder (File name too long)"),
    (
        ("report", "run", "--seed", "-1"),
        "Invalid value for '--seed': Input should be greater than or equal to 0",
    ),
    (
        ("compare", "run", "--seed", str(2**63)),
        "Invalid value for '--seed': Input should be less than or",
    ),
    (
        ("report", "run", "--resamples", "99999999999999999999"),
        "Invalid value for '--resamples': Input should be less than or equal to 1000000",
    ),
    (("compare", "run", "--resamples", "10"), "Invalid value for '--resamples': Input should be greater"),
    (
        ("run", "--tokenizer", "a0_\udcffname.json", "--no-progress"),
        "--tokenizer: a0_\\udcffname.json: tokenizer not found",
    ),
    (
        ("serve", "vllm", "--model", "m", "--python", "a0_missing"),
        "--python: 'a0_missing' is not an executable (a path, or a name on PATH)",
    ),
    (
        (*RUN, "--n", "2", "--out", "prompts.jsonl/child"),
        "--out prompts.jsonl/child: cannot create the folder (Not a directory)",
    ),
    (
        ("serve", "container", "name", "--docker-host", "http://127.0.0.1:99999"),
        "--docker-host: cannot reach the Docker engine at http://127.0.0.1:99999 (Port out of range",
    ),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[tuple[str, ...], tuple[Path, subprocess.CompletedProcess]]:
    """Every case's folder and result, by its arguments: all run once, side by side."""
    folders = {args: tmp_path_factory.mktemp("case") for args, _ in CASES}
    assert len(folders) == len(CASES), "two cases with the same arguments"
    for folder in folders.values():
        (folder / "prompts.jsonl").write_text(SURROGATE_PROMPTS)

    def run(args: tuple[str, ...]) -> tuple[Path, subprocess.CompletedProcess]:
        return folders[args], run_joulebench(*args, cwd=folders[args], timeout=120)

    return dict(zip(folders, side_by_side(run, folders), strict=True))


@pytest.mark.parametrize(
    ("args", "expected"),
    CASES,
    ids=lambda value: " ".join(value[:2]) + " " + " ".join(value[-2:]) if isinstance(value, tuple) else None,
)
def test_one_line_and_nothing_left_behind(outcomes, args, expected):
    folder, result = outcomes[args]
    assert "Traceback" not in result.stderr, result.stderr
    message = one_line_error(result.stderr, result.returncode)
    assert message.startswith(expected), message
    assert sorted(p.name for p in folder.iterdir()) == ["prompts.jsonl"], "something was left behind"
