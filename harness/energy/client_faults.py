"""An error flag for requests that failed in the client itself, not in the server.

A `client_error` request (harness/backends/blame.py: the runner ran out of descriptors, local ports,
buffers or memory, or its own stack failed) says nothing about the server, and the requests around it
were sent by a client in trouble: the arm's failures, rates and joules per request measure the load
generator. That is an error, not a warning, so `--strict` fails the run.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.energy.flags import FlagList

CLIENT_ERROR = "client_error"  # the status harness/records.py lists for these requests


def flag_client_faults(by_status: Mapping[str, int], total: int, flags: FlagList, scope: str) -> None:
    """Add the `client_errors` error flag to `flags` when `by_status` (request counts by status, as
    the summary's `requests.by_status`) holds any `client_error`; `total`: the requests planned."""
    n = by_status.get(CLIENT_ERROR, 0)
    if n:
        flags.add(
            "client_errors",
            "error",
            f"{n} of {total} requests failed in the client, not the server ({CLIENT_ERROR}: out of "
            "descriptors, local ports or memory?): these figures measure the load generator; see the "
            "requests' error text, fix the client (`ulimit -n`, --max-concurrency) and run again",
            scope,
        )
