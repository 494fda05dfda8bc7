"""What a shaped arm's requests leave in the record: the user's arrival, the policy's hold, lateness as the
runner's own timing error; a log rebuilt after a crash; request files written before shaped arms."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from runner_helpers import plan_of

from harness.clock import ClockAnchor
from harness.records import RequestRecord, Shard, records_frame
from harness.runfolder.request_log import HELD_CANCELLED, RecordLog, compact_log, log_header
from harness.runfolder.requests_file import read_requests

REPO = Path(__file__).resolve().parents[3]


def record(planned: int | None, arrived: int | None, sent: int | None) -> RequestRecord:
    rec = RequestRecord(0, "a", 0, "p0", warmup=False, api="openai-chat", stream=True)
    rec.planned_ns, rec.arrived_ns, rec.sent_ns = planned, arrived, sent
    return rec


@pytest.mark.parametrize(
    ("arrived", "sent", "lateness", "hold"),
    [
        (1_003, 1_500, 3, 497),  # shaped: late by the runner's 3 ns; held 497 ns by the policy
        (None, 1_005, 5, 0),  # unshaped: arrives when sent
        (1_003, None, 3, None),  # held, never sent (cancelled while held)
        (None, None, None, None),  # never arrived (not_sent)
    ],
)
def test_lateness_is_the_runners_and_the_hold_the_policys(arrived, sent, lateness, hold) -> None:
    rec = record(1_000, arrived, sent)
    assert (rec.lateness_ns, rec.hold_ns) == (lateness, hold)
    anchor = ClockAnchor(epoch_ns=10_000, mono_ns=1_000, boot_id="b")
    row = records_frame([rec], anchor).iloc[0]
    arrival = arrived if arrived is not None else sent  # as the file has it
    assert [value(row[c]) for c in ("lateness_ns", "hold_ns", "arrived_ns", "arrived_epoch_ns")] == [
        lateness,
        hold,
        arrival,
        None if arrival is None else arrival + 9_000,
    ]


def value(cell) -> int | None:
    return None if cell is pd.NA else int(cell)


def test_a_file_from_before_shaped_arms_reads_as_unshaped() -> None:
    # A run folder committed with the H100 results, written before these columns existed.
    path = sorted(REPO.glob("docs/results/arrival-shaping-h100/raw/*/requests.parquet"))[0]
    frame, _ = read_requests(path)
    sent = frame["sent_ns"].notna()
    assert sent.any()
    assert (frame.loc[sent, "arrived_ns"] == frame.loc[sent, "sent_ns"]).all()
    assert (frame.loc[sent, "arrived_epoch_ns"] == frame.loc[sent, "sent_epoch_ns"]).all()
    assert (frame.loc[sent, "hold_ns"] == 0).all() and frame.loc[~sent, "hold_ns"].isna().all()


def test_a_killed_shaped_run_is_rebuilt_from_its_log(tmp_path) -> None:
    plan = plan_of("fixed:interval=0.1", n=4, policies=["window:period=1"])
    anchor = ClockAnchor.now()
    log = RecordLog(
        tmp_path / "requests.jsonl",
        log_header(anchor=anchor, plan=plan, shard=Shard(), warmup=0, api="openai-chat", stream=True),
    )
    recs = [
        RequestRecord(i, "fixed+window-1s", i, str(i), warmup=False, api="openai-chat", stream=True)
        for i in range(4)
    ]
    start = 5_000_000_000
    log.event("arm", arm="fixed+window-1s", start_ns=start)
    for i, rec in enumerate(recs[:3]):  # users 0-2 arrived; 3 had not when the runner died
        rec.planned_ns = start + i * 100_000_000
        rec.arrived_ns = rec.planned_ns + 1_000
        log.arrived(rec)
    for rec in recs[:2]:  # the window released 0 and 1
        rec.sent_ns = start + 1_000_000_000
        log.sent(rec)
    recs[0].finish("ok", start + 1_200_000_000)
    log.row(recs[0])
    log.event("tick", t=start + 1_500_000_000)  # the last sign of life; no "end" line: it was killed

    rows = compact_log(tmp_path / "requests.jsonl", plan).frame.set_index("request_id")
    assert list(rows["status"]) == ["ok", "cancelled", "cancelled", "not_sent"]
    assert rows.loc[1, "hold_ns"] == 1_000_000_000 - 100_000_000 - 1_000  # sent, in flight when killed
    assert rows.loc[1, "arrived_ns"] == start + 100_001_000
    held = rows.loc[2]
    assert value(held["sent_ns"]) is None and held["arrived_ns"] == start + 200_001_000
    assert held["error"].startswith(HELD_CANCELLED) and held["done_ns"] == start + 1_500_000_000
    assert held["lateness_ns"] == 1_000  # the arrival's, though it was never sent
    assert value(rows.loc[3, "arrived_ns"]) is None
