"""A warm-up that fails is said on stderr (its rows are excluded from every result, so nothing else
would show it); a warm-up that succeeds says nothing."""

from __future__ import annotations

from runner_helpers import plan_of, run_plan


def _warmup_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warm-up" in line]


def test_failed_warmup_is_reported_with_its_count_and_first_error(mock_server, tmp_path, capsys) -> None:
    server = mock_server("--profile", "synthetic-fast", "--error-rate", "1", "--error-status", "503")
    result = run_plan(server.url, plan_of("fixed:interval=0.01", n=3), tmp_path, warmup=2, timeout_s=10)
    warmups = result.requests[result.requests["warmup"]]
    failed = warmups[warmups["status"] != "ok"]
    assert len(warmups) == 2 and len(failed) == 2  # the request log holds what the line reports
    (line,) = _warmup_lines(capsys.readouterr().err)
    assert line.startswith("joulebench: warning: 2 of 2 warm-up request(s) failed"), line
    first = failed.sort_values("request_id", ascending=False).iloc[0]  # ids -1, -2, ...: -1 went first
    assert f"{first['status']} 503" in line and first["error"] in line, line


def test_successful_warmup_says_nothing(fast_mock, tmp_path, capsys) -> None:
    result = run_plan(fast_mock.url, plan_of("fixed:interval=0.01", n=3), tmp_path, warmup=2, timeout_s=10)
    assert (result.requests["status"] == "ok").all()
    assert _warmup_lines(capsys.readouterr().err) == []
