"""benchmarks/peers/: the figures every tool is judged by (lateness against the ideal grid, realized
rate, CPU per request, the table and its ratios) on hand-made arrivals, and the script end to end with
joulebench alone against the streaming arrival server (the peers are never installed here: they are
benchmarks/peers/setup.sh's, outside the project's dependencies)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from joulebench_testkit import REPO

sys.path[:0] = [str(REPO / "benchmarks" / "peers")]

from peer_figures import grid_lateness_ms, realized_rate, run_figures, summarize, table  # noqa: E402

MS = 1_000_000


def test_lateness_is_against_the_grid_placed_so_that_no_request_is_early() -> None:
    # 100 req/s: due every 10 ms. The first is 3 ms late (a new connection), the third 5 ms, the rest
    # on time: anchoring at the first arrival would call the on-time ones 3 ms early.
    arrivals = [1_000 * MS + 3 * MS, 1_010 * MS, 1_025 * MS, 1_030 * MS, 1_040 * MS]
    assert grid_lateness_ms(arrivals, 100).tolist() == [3.0, 0.0, 5.0, 0.0, 0.0]
    assert grid_lateness_ms(arrivals, 100, "first").tolist() == [0.0, -3.0, 2.0, -3.0, -3.0]
    # Order of logging does not matter, arrivals are matched to the grid in time order.
    assert grid_lateness_ms(arrivals[::-1], 100).tolist() == [3.0, 0.0, 5.0, 0.0, 0.0]


def test_a_schedule_that_drifts_slow_is_late_by_the_drift() -> None:
    # Sent every 10.1 ms against a 10 ms grid: the i-th is 0.1 * i ms late, whatever the start.
    arrivals = [5 * MS + round(i * 10.1 * MS) for i in range(101)]
    late = grid_lateness_ms(arrivals, 100)
    assert late[0] == 0 and late[-1] == pytest.approx(10.0)
    assert realized_rate(arrivals) == pytest.approx(1000 / 10.1)


def test_run_figures_take_the_cpu_spent_between_first_and_last_arrival() -> None:
    arrivals = [2_000 * MS + i * 10 * MS for i in range(11)]  # 100 ms from first to last
    # cumulative CPU: 0.5 s of start-up, then 1 ms of CPU per 10 ms of wall time
    samples = [(0, 0.0), (2_000 * MS, 0.5), (2_200 * MS, 0.52)]
    figures = run_figures(arrivals, 100, samples, cpu_total_s=0.6)
    assert figures["arrived"] == 11 and figures["lateness_p99_ms"] == 0.0
    assert figures["cpu_ms_per_request"] == pytest.approx(1.0)  # 10 ms of CPU over 10 intervals
    assert figures["cpu_ms_per_request_total"] == pytest.approx(600 / 11)


def _run(tool: str, repeat: int, p99: float, cpu: float, error: str | None = None) -> dict[str, Any]:
    figures = {
        "arrived": 300,
        "realized_rate": 100.0,
        "lateness_p50_ms": p99 / 4,
        "lateness_p99_ms": p99,
        "lateness_max_ms": 2 * p99,
        "cpu_ms_per_request": cpu,
        "cpu_ms_per_request_total": 10 * cpu,
    }
    run = {"tool": tool, "rate": 100.0, "tokens": 16, "requests": 300, "repeat": repeat, "figures": figures}
    return {**run, "error": error} if error else run


def test_summary_takes_medians_over_good_runs_and_ratios_to_joulebench() -> None:
    runs = [
        _run("joulebench", 0, 2.0, 0.1),
        _run("joulebench", 1, 4.0, 0.3),
        _run("joulebench", 2, 3.0, 0.2),
        _run("aiperf", 0, 30.0, 0.8),
        _run("aiperf", 1, 10.0, 0.4),
        _run("aiperf", 2, 99.0, 9.0, "exit 1"),
    ]
    rows = {row["tool"]: row for row in summarize(runs)}
    assert rows["joulebench"]["lateness_p99_ms"] == {"median": 3.0, "min": 2.0, "max": 4.0}
    aiperf = rows["aiperf"]
    assert (aiperf["runs"], aiperf["ok_runs"], aiperf["errors"]) == (3, 2, ["exit 1"])
    assert aiperf["lateness_p99_ms"] == {"median": 20.0, "min": 10.0, "max": 30.0}
    assert aiperf["vs_joulebench"]["lateness_p99_ms"] == pytest.approx(20 / 3)
    assert aiperf["vs_joulebench"]["cpu_ms_per_request"] == pytest.approx(0.6 / 0.2)
    text = table(list(rows.values()))
    assert "| 16 | 100 | aiperf | 2/3 | 300 of 300 | 100.0 | 5.00 (2.50–7.50) | 20.00 (10.00–30.00) |" in text
    assert "| 6.67× | 3.00× / 3.00× |" in text
    assert "- aiperf at 100 req/s, 16 tokens: exit 1" in text


def test_a_tool_that_never_ran_has_no_figures_and_says_why() -> None:
    runs = [
        _run("joulebench", 0, 2.0, 0.1),
        {
            "tool": "inference-perf",
            "rate": 100.0,
            "tokens": 16,
            "requests": 300,
            "repeat": 0,
            "error": "inference-perf==0.7.0 requires Python >=3.12",
        },
    ]
    rows = {row["tool"]: row for row in summarize(runs)}
    assert rows["inference-perf"]["lateness_p99_ms"] is None
    assert rows["inference-perf"]["vs_joulebench"]["lateness_p99_ms"] is None
    assert "| 16 | 100 | inference-perf | 0/1 | – of 300 | – |" in table(list(rows.values()))


@pytest.mark.slow
def test_side_by_side_runs_joulebench_against_the_stream_server(tmp_path) -> None:
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text("{}")  # only checked for, never loaded: no peer runs
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "peers" / "side_by_side.py"),
            "--tools",
            "joulebench,aiperf",
            "--rates",
            "100",
            "--requests",
            "60",
            "--tokens",
            "8",
            "--repeats",
            "1",
            "--peers-home",
            str(tmp_path / "none"),
            "--tokenizer",
            str(tmp_path / "tok"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "side_by_side.json").read_text())
    jb, aiperf = sorted(result["runs"], key=lambda r: r["tool"] != "joulebench")
    assert "error" not in jb and jb["figures"]["arrived"] == 60  # every request seen by the server
    assert 90 < jb["figures"]["realized_rate"] < 110
    assert jb["figures"]["lateness_p50_ms"] >= 0 and np.isfinite(jb["figures"]["lateness_p99_ms"])
    assert jb["figures"]["cpu_ms_per_request"] > 0 and jb["figures"]["cpu_ms_per_request_total"] > 0
    assert aiperf["error"].startswith("not installed")  # no virtualenv at --peers-home: skipped, said so
    assert "| 8 | 100 | joulebench | 1/1 | 60 of 60 |" in (tmp_path / "out" / "side_by_side.md").read_text()


def test_the_committed_run_is_its_raw_runs_and_the_readme_quotes_its_ratios() -> None:
    folder = REPO / "benchmarks" / "results" / "peers"
    doc = json.loads((folder / "side_by_side.json").read_text())
    assert summarize(doc["runs"]) == doc["summary"]
    text = table(doc["summary"])
    assert (folder / "side_by_side.md").read_text() == text + "\n"
    readme = (REPO / "README.md").read_text()
    for line in text.splitlines()[2:]:
        assert line in readme, line
