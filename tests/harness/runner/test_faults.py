"""Every fault the mock can inject (and a server that dies mid-run): each planned request still has
exactly one row, with the status that names what happened, and the run finishes."""

from __future__ import annotations

import threading

import pytest
from runner_helpers import one_row_each, plan_of, run_plan

# (mock flags, expected status, streaming check, whole-response check) per fault, at rate 1.
FAULTS = {
    "500": (["--error-rate", "1", "--error-status", "500"], "http_error", "HTTP 500", "HTTP 500"),
    "503": (["--error-rate", "1", "--error-status", "503"], "http_error", "HTTP 503", "HTTP 503"),
    "429": (["--rate-limit-rate", "1", "--retry-after", "2"], "http_error", "retry-after 2", "retry-after 2"),
    "disconnect": (["--disconnect-rate", "1"], "stream_error", "during the response", "the response"),
    "malformed": (["--malformed-rate", "1"], "stream_error", "malformed SSE data", "malformed response body"),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_fault(mock_server, tmp_path, fault: str) -> None:
    flags, status, stream_error, whole_error = FAULTS[fault]
    server = mock_server("--profile", "synthetic-fast", *flags)
    plan = plan_of("fixed:interval=0.01", n=8, max_tokens=16)
    for stream, expected_error in ((True, stream_error), (False, whole_error)):
        result = run_plan(server.url, plan, tmp_path / str(stream), stream=stream, timeout_s=10)
        rows = one_row_each(result, plan)
        assert result.stop_reason == "completed"
        assert (rows["status"] == status).all(), rows[["status", "error"]].head()
        assert rows["error"].str.contains(expected_error, regex=False).all(), rows["error"].head()
        assert rows["done_ns"].notna().all()
        if status == "http_error":
            assert (rows["http_status"] == int(fault if fault.isdigit() else 429)).all()
        if fault == "disconnect" and stream:
            assert (rows["chunks"] >= 1).all()  # what arrived before the cut is kept


@pytest.mark.slow
def test_no_usage_and_line_breaking_text(mock_server, tmp_path) -> None:
    server = mock_server("--profile", "synthetic-fast", "--no-usage-rate", "1", "--linebreak-rate", "1")
    plan = plan_of("fixed:interval=0.01", n=8, max_tokens=6)
    for backend in ("openai-chat", "tgi"):
        result = run_plan(server.url, plan, tmp_path / backend, backend=backend)
        rows = one_row_each(result, plan)
        # Every token's text holds a character str.splitlines() splits at, and every chunk still parses.
        assert (rows["status"] == "ok").all(), rows["error"].dropna().head()
        assert rows["chunks"].between(1, 6).all()
        assert rows["output_tokens"].isna().all()  # not reported, so not invented


@pytest.mark.slow
def test_server_dies_mid_run(mock_server, tmp_path) -> None:
    server = mock_server("--profile", "synthetic-fast")
    plan = plan_of("fixed:interval=0.02", n=60, max_tokens=400)
    killer = threading.Timer(0.5, server.process.kill)
    killer.start()
    try:
        result = run_plan(server.url, plan, tmp_path, timeout_s=10)
    finally:
        killer.cancel()
    rows = one_row_each(result, plan)
    counts = rows["status"].value_counts()
    assert result.stop_reason == "completed"
    assert counts.get("connect_error", 0) >= 20  # everything sent after the server was gone
    assert counts.get("ok", 0) + counts.get("stream_error", 0) + counts["connect_error"] == 60
    assert rows["done_ns"].notna().all()
