"""Requests that failed in the client raise an error flag (so --strict fails); other failures do not."""

from __future__ import annotations

from harness.energy.client_faults import CLIENT_ERROR, flag_client_faults
from harness.energy.flags import FlagList
from harness.records import STATUSES


def test_client_errors_are_an_error_naming_the_count_and_scope() -> None:
    flags = FlagList()
    flag_client_faults({"ok": 245, "client_error": 355}, 600, flags, "bursty")
    (flag,) = flags
    assert (flag.code, flag.severity, flag.scope) == ("client_errors", "error", "bursty")
    assert flag.message.startswith("355 of 600 requests failed in the client, not the server")
    assert "ulimit -n" in flag.message


def test_server_and_network_failures_are_not_blamed_on_the_client() -> None:
    flags = FlagList()
    counts = {"ok": 10, "connect_error": 3, "http_error": 2, "stream_error": 1, "timeout": 1, "not_sent": 4}
    flag_client_faults(counts, 21, flags, "fixed")
    assert flags == []


def test_the_flag_looks_for_the_status_the_runner_writes() -> None:
    assert CLIENT_ERROR in STATUSES
