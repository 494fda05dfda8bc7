"""A `joulebench run` whose output is not a terminal (a CI log) still says how it is going: a plain line
on stderr every few seconds, each with the elapsed time, the current arm and the counts so far."""

from __future__ import annotations

import re

from joulebench_testkit import run_joulebench, run_mock_server

from harness.runner.progress import ProgressDisplay

LINE = re.compile(r"^\[(?P<elapsed>[\d.]+) s\] (?P<arm>\S+) · sent (?P<sent>\d+)/(?P<planned>\d+) · ")


def test_a_piped_run_prints_progress_lines(tmp_path) -> None:
    # 24 requests 0.5 s apart: 12 s of sending, so at least two lines come before the last.
    with run_mock_server("--speed", "10") as mock:
        done = run_joulebench(
            "run", "--target", mock.url, "--n", "24", "--schedule", "fixed:interval=0.5",
            "--out", str(tmp_path),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [m for m in map(LINE.match, done.stderr.splitlines()) if m]
    assert len(lines) >= 3, done.stderr  # two on the way, one at the end
    elapsed = [float(m["elapsed"]) for m in lines]
    sent = [int(m["sent"]) for m in lines]
    assert sent == sorted(sent) and sent[0] < sent[-1] == 24, done.stderr
    assert {m["arm"] for m in lines[1:]} == {"fixed"} and {m["planned"] for m in lines} == {"24"}
    # On the grid of absolute deadlines, LINE_S apart (the run's periodic task checks every 0.5 s).
    for k, seconds in enumerate(elapsed[:-1], start=1):
        assert k * ProgressDisplay.LINE_S <= seconds < k * ProgressDisplay.LINE_S + 1.0, elapsed
    assert "\x1b[" not in done.stderr  # no live display's cursor movements in a log
