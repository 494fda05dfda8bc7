"""Values that once crashed whole commands with a traceback (some after making a run folder): each is now
one `joulebench: error:` line naming the flag or file, exit status 2, and nothing is left behind.

Run as a user runs them (`python -m harness` subprocesses), from an empty folder that must stay empty.
"""

from __future__ import annotations

import pytest
from joulebench_testkit import one_line_error, run_joulebench

pytestmark = pytest.mark.slow

SURROGATE_PROMPTS = '{"prompt": "fine"}\n{"prompt": "hi \\ud800 there"}\n'
RUN = ("run", "--prompts", "synthetic", "--schedule", "poisson:rate=5", "--no-progress", "--out", "runs")
BUILD = ("plan", "build", "--prompts", "synthetic", "--schedule", "poisson:rate=5", "--out", "p.parquet")
LONG = "x" * 300  # longer than a file name may be (NAME_MAX): a path that cannot exist


@pytest.mark.parametrize(
    ("args", "expected"),
    [
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
    ],
    ids=lambda value: " ".join(value[:2]) + " " + " ".join(value[-2:]) if isinstance(value, tuple) else None,
)
def test_one_line_and_nothing_left_behind(tmp_path, args, expected):
    (tmp_path / "prompts.jsonl").write_text(SURROGATE_PROMPTS)
    result = run_joulebench(*args, cwd=tmp_path, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    message = one_line_error(result.stderr, result.returncode)
    assert message.startswith(expected), message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.jsonl"], "something was left behind"
