"""`joulebench shape` with bad input: one `joulebench: error:` line naming the flag, exit status 2, no
traceback, and no log file left behind. Run as a user runs it, from an empty folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from joulebench_testkit import busy_port, one_line_error, run_joulebench

pytestmark = pytest.mark.slow

UP = ("--upstream", "http://127.0.0.1:8000")
WINDOW = ("--policy", "window:period=1")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((*UP,), "--policy: required, e.g. --policy window:period=1 (docs/shaping.md)"),
        ((*UP, "--policy", "hold"), "--policy 'hold': unknown policy 'hold' (known: passthrough, pace, "
                                    "token-bucket, window, batch, concurrency-cap, slo-slack, custom)"),
        ((*UP, "--policy", "window:T=1"), "--policy 'window:T=1': window: unknown parameter 'T'"),
        ((*UP, "--policy", "batch:k=2.5,max_wait=1"), "--policy 'batch:k=2.5,max_wait=1': batch: k: input"),
        ((*WINDOW,), "--upstream: required, e.g. --upstream http://127.0.0.1:8000"),
        ((*WINDOW, "--upstream", "127.0.0.1:8000"), "--upstream '127.0.0.1:8000': not an http(s) URL"),
        ((*WINDOW, "--upstream", "http://127.0.0.1:99999"), "--upstream 'http://127.0.0.1:99999': not"),
        ((*WINDOW, "--upstream", "http://user:s3cret@127.0.0.1:8000"),
         "--upstream 'http://***@127.0.0.1:8000': credentials in the URL are not supported"),
        ((*WINDOW, *UP, "--port", "70000"), "--port: expected 0-65535, got 70000"),
        ((*WINDOW, *UP, "--port", "eighty"), "--port: expected an integer, got 'eighty'"),
        ((*WINDOW, *UP, "--metrics-port", "-1"), "--metrics-port: expected 0-65535, got -1"),
        ((*WINDOW, *UP, "--max-held", "0"), "--max-held: expected at least 1, got 0"),
        ((*WINDOW, *UP, "--grace", "nan"), "--grace: expected 0 to 3600 seconds, got nan"),
        ((*WINDOW, *UP, "--host", "exa mple", "--port", "0"), "--host 'exa mple' --port 0: cannot listen"),
        ((*WINDOW, *UP, "--log", "."), "--log .: is a folder"),
        ((*WINDOW, *UP, "--log", "missing/x.jsonl"), "--log missing/x.jsonl: missing is not a folder"),
    ],
    ids=lambda value: " ".join(value[-2:]) if isinstance(value, tuple) else None,
)  # fmt: skip
def test_bad_flags_are_one_line(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    result = run_joulebench("shape", *args, cwd=tmp_path, timeout=60)
    assert one_line_error(result.stderr, result.returncode).startswith(expected)
    assert "s3cret" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["--port", "--metrics-port"])
def test_a_port_in_use_is_one_line_and_no_log(tmp_path: Path, flag: str) -> None:
    with busy_port() as port:
        ports = {"--port": "0", "--metrics-port": "0", flag: str(port)}
        result = run_joulebench(
            "shape", *WINDOW, *UP, *(item for pair in ports.items() for item in pair), "--log", "shape.jsonl",
            cwd=tmp_path, timeout=60,
        )  # fmt: skip
    message = one_line_error(result.stderr, result.returncode)
    assert f"{flag} {port}: cannot listen there" in message
    assert not (tmp_path / "shape.jsonl").exists()
