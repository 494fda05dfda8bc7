"""The warm-up's outcome, said out loud: a warm-up that failed leaves the server cold (or unreachable)
when the measurement starts, and its rows are excluded from every result, so nothing else shows it."""

from __future__ import annotations

from collections.abc import Sequence

from foundation.user_warning import warn
from harness.records import WARMUP_NOT_FAILED, RequestRecord


def warmup_failure_line(warmups: Sequence[RequestRecord]) -> str | None:
    """One line naming how many warm-up requests failed and the first one's error (None: all ok)."""
    failed = [r for r in warmups if r.terminal and r.status not in WARMUP_NOT_FAILED]
    if not failed:
        return None
    first = failed[0]
    what = first.status + (f" {first.http_status}" if first.http_status is not None else "")
    detail = f": {first.error}" if first.error else ""
    return (
        f"{len(failed)} of {len(warmups)} warm-up request(s) failed (first: "
        f"{what}{detail}); the server may not be warm when the measurement starts"
    )


def report_warmup(warmups: Sequence[RequestRecord]) -> None:
    line = warmup_failure_line(warmups)
    if line is not None:
        warn(line)
