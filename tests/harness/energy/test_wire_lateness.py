"""Lateness and realized rate at the wire (issue 19): an unshaped request is offered to the server when
its last byte is written (`wire_ns`), not when the runner dispatched it; an older log without wire times
falls back to the dispatch and says so; a shaped arm's lateness stays of its users' arrivals. In-flight
counts and holds at --max-in-flight come from the same log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from harness.clock import ClockAnchor
from harness.energy.figures import RequestTimes, client_load, lateness_ms, rates
from harness.records import RequestRecord, records_table, unshaped_columns

MS = 1_000_000


def _frame(
    n: int = 5, wire_delay_ms: float | None = 3.0, gap_ms: int = 10, shaped: bool = False
) -> pd.DataFrame:
    planned = np.arange(n, dtype=np.int64) * gap_ms * MS + 1_000 * MS
    sent = planned + MS // 2  # dispatched 0.5 ms late
    return pd.DataFrame(
        {
            "planned_ns": planned,
            "sent_ns": sent,
            "arrived_ns": sent - (2 * MS if shaped else 0),  # a shaped request arrived before its send
            "wire_ns": pd.array(
                [None] * n if wire_delay_ms is None else sent + int(wire_delay_ms * MS), dtype="Int64"
            ),
            "lateness_ns": (sent - 2 * MS if shaped else sent) - planned,
            "done_ns": sent + 25 * MS,
            "capped_ns": pd.array([0, 0, 4 * MS, 0, 7 * MS][:n], dtype="Int64"),
        }
    )


def test_lateness_is_at_the_wire_and_the_dispatch_figure_is_kept_beside_it() -> None:
    t = RequestTimes.of(_frame())
    late = lateness_ms(t, np.ones(5, dtype=bool))
    assert late["at"] == "wire"
    assert late["p50"] == pytest.approx(3.5) and late["max"] == pytest.approx(3.5)
    assert late["dispatch"]["p99"] == pytest.approx(0.5)


def test_a_log_without_wire_times_falls_back_to_the_dispatch_and_says_so() -> None:
    t = RequestTimes.of(_frame(wire_delay_ms=None).drop(columns=["wire_ns"]))
    late = lateness_ms(t, np.ones(5, dtype=bool))
    assert late["at"] == "dispatch" and late["p99"] == pytest.approx(0.5)


def test_a_shaped_arm_is_late_by_its_arrivals_not_its_wire() -> None:
    t = RequestTimes.of(_frame(shaped=True))
    late = lateness_ms(t, np.ones(5, dtype=bool))
    assert late["at"] == "arrival" and late["p99"] == pytest.approx(-1.5)


def test_the_realized_rate_is_of_the_wire_times() -> None:
    frame = _frame()
    frame.loc[4, "wire_ns"] += 40 * MS  # the last request reached the wire 40 ms after its dispatch
    got = rates(RequestTimes.of(frame), np.ones(5, dtype=bool), None)
    assert got["planned"] == pytest.approx(100.0)
    assert got["realized"] == pytest.approx(4 / 0.080)


def test_in_flight_counts_and_holds() -> None:
    # 10 ms apart, 25 ms each: the third finds two before it in flight, itself the third.
    load = client_load(RequestTimes.of(_frame()), np.ones(5, dtype=bool))
    assert (load["in_flight_max"], load["capped"], load["capped_ms_max"]) == (3, 2, pytest.approx(7.0))
    assert load["loop_lag_ms"] is None and load["cpu_share"] is None


def test_an_older_requests_table_reads_without_wire_times_or_holds() -> None:
    rec = RequestRecord(0, "a", 0, "p0", warmup=False, api="openai-chat", stream=True)
    rec.planned_ns, rec.sent_ns, rec.wire_ns, rec.capped_ns = 10, 20, 30, 0
    rec.finish("ok", 40)
    table = records_table([rec], ClockAnchor(epoch_ns=1_000, mono_ns=0))
    assert table.column("wire_epoch_ns").to_pylist() == [1_030]
    old = table.drop_columns(["wire_ns", "wire_epoch_ns", "capped_ns"])
    read = unshaped_columns(old)
    assert read.schema == table.schema
    assert read.column("wire_ns").to_pylist() == [None] and read.column("capped_ns").to_pylist() == [None]
    assert read.column("sent_ns") == pa.chunked_array([[20]], pa.int64())
