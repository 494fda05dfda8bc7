"""The per-arm table of a run without power: its error flags are the energy summary's, so --strict and
an experiment's cells fail on them there too."""

from __future__ import annotations

import pandas as pd
from rich.console import Console

from harness.report.request_summary import arm_summary, arm_table
from harness.report.terminal import Column, FittedTable

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


def test_at_80_columns_ttft_and_e2e_are_never_left_out() -> None:
    # Wide enough that columns must go: TTFT and E2E are all a run without power measured.
    summary = arm_summary(
        pd.DataFrame(_rows("fixed-interval-arm", ["ok"] * 1200 + ["client_error"] * 3, 12.5))
    )
    console = Console(width=80, record=True)
    console.print(arm_table(summary))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    row = next(line for line in text.splitlines() if line.startswith("│ fixed-inter"))  # the name folds
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[-2:] == [f"{summary[0]['ttft_ms']['p50']:.1f}", f"{summary[0]['e2e_ms']['p50']:.1f}"]
    (left_out,) = [line for line in text.splitlines() if line.startswith("not shown at 80 columns: ")]
    assert "planned" in left_out and "TTFT" not in left_out and "E2E" not in left_out


def test_a_table_of_no_arms_renders_its_headings() -> None:
    # Every request a warm-up: no row, and the table still prints (its headings) rather than raising.
    summary = arm_summary(pd.DataFrame(_rows("fixed", ["ok"] * 3, 0.0)).assign(warmup=True))
    assert summary == []
    console = Console(width=80, record=True)
    console.print(arm_table(summary))
    assert "TTFT" in console.export_text()
    console.print(FittedTable("no heading", [Column("")], []))  # an empty heading has no longest word


def test_lateness_is_at_the_wire_where_the_log_has_it() -> None:
    rows = _rows("fixed", ["ok"] * 20, 1.0)
    for row in rows:  # the request reached the socket 300 ms after its dispatch
        row["wire_ns"] = row["sent_ns"] + 300 * MS
    (arm,) = arm_summary(pd.DataFrame(rows))
    assert arm["lateness_ms"]["at"] == "wire"
    assert abs(arm["lateness_ms"]["p50"] - 301.0) < 1e-6 and arm["lateness_ms"]["dispatch"]["p50"] == 1.0
    assert arm["errors"] == ["lateness_over_bound"]


def test_held_at_the_cap_and_a_lagging_loop_are_error_flags_without_power() -> None:
    capped = _rows("capped", ["ok"] * 20, 1.0)
    capped[5]["capped_ns"] = 40 * MS
    lag = {"p50": 1.0, "p99": 35.0, "n": 50, "max": 40.0}
    arms = {
        a["arm"]: a
        for a in arm_summary(
            pd.DataFrame(capped + _rows("lagged", ["ok"] * 20, 1.0)), loop_lag={"lagged": lag}
        )
    }
    assert arms["capped"]["errors"] == ["in_flight_capped"] and arms["capped"]["capped"] == 1
    assert arms["lagged"]["errors"] == []  # the default bound is a warning in the summary, not an error
    rows = pd.DataFrame(_rows("lagged", ["ok"] * 20, 1.0))
    (over,) = arm_summary(rows, (), None, {"lagged": lag}, 30.0)  # --max-loop-lag-ms 30
    (within,) = arm_summary(rows, (), None, {"lagged": lag}, 50.0)
    assert over["errors"] == ["loop_lag_over_bound"] and within["errors"] == []
