"""The per-arm table of a run without power: its error flags are the energy summary's, so --strict and
an experiment's cells fail on them there too."""

from __future__ import annotations

import pandas as pd

from harness.report.request_summary import arm_summary

MS = 1_000_000


def _rows(arm: str, statuses: list[str], late_ms: float) -> list[dict]:
    return [
        {"arm": arm, "warmup": False, "status": status, "planned_ns": i * 100 * MS,
         "sent_ns": i * 100 * MS + int(late_ms * MS), "arrived_ns": i * 100 * MS + int(late_ms * MS),
         "lateness_ns": int(late_ms * MS),
         "first_token_ns": i * 100 * MS + 50 * MS, "done_ns": i * 100 * MS + 90 * MS}
        for i, status in enumerate(statuses)
    ]  # fmt: skip


def test_client_errors_and_late_sends_are_error_flags_without_power() -> None:
    requests = pd.DataFrame(
        _rows("fine", ["ok"] * 20, 1.0)
        + _rows("starved", ["ok"] * 18 + ["client_error"] * 2, 1.0)
        + _rows("late", ["ok"] * 20, 400.0)
    )
    arms = {a["arm"]: a for a in arm_summary(requests)}
    assert arms["fine"]["errors"] == []
    assert arms["starved"]["errors"] == ["client_errors"]
    assert arms["late"]["errors"] == ["lateness_over_bound"] and arms["late"]["late"]


def test_the_rate_of_a_shaped_arm_is_of_its_arrivals_not_its_releases() -> None:
    rows = _rows("window", ["ok"] * 20, 1.0)
    for i, row in enumerate(rows):  # users every 100 ms; a window sends them each whole second
        row["sent_ns"] = (i // 10 + 1) * 1_000 * MS
    (arm,) = arm_summary(pd.DataFrame(rows))
    assert arm["rate_per_s"] == 10.0
