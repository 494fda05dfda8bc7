"""The request record contract: one row per planned request, from a complete log or a torn one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.records import RECORD_COLUMNS, TIME_COLUMNS, Shard
from harness.runfolder.request_log import RecordLog, compact_log, expected_records, log_header
from harness.runfolder.requests_file import read_requests, write_requests
from traffic.builder import build_plan
from traffic.spec import PlanSpec


@pytest.fixture(scope="module")
def plan():
    spec = PlanSpec.parse(
        {"prompts": "synthetic", "schedules": ["fixed:interval=0.1", "concurrency:n=2"], "n": 6}
    )
    return build_plan(spec)


def test_expected_records_cover_the_shard_and_warmups(plan) -> None:
    all_ids = [r.request_id for r in expected_records(plan, shard=Shard(), warmup=2, api="a", stream=True)]
    assert all_ids == [-1, -2, *range(12)]
    shards = [expected_records(plan, shard=Shard(i, 3), warmup=0, api="a", stream=True) for i in range(3)]
    ids = sorted(r.request_id for part in shards for r in part)
    assert ids == list(range(12))
    assert all(r.request_id % 3 == 1 for r in shards[1])
    with pytest.raises(InputError, match="--shard 3/3"):
        Shard(3, 3)
    with pytest.raises(InputError, match="expected I/N"):
        Shard.parse("1-4")


def start_log(path, plan, *, shard=None, warmup=0, anchor=None):
    shard = shard or Shard()
    anchor = anchor or ClockAnchor(epoch_ns=1_700_000_000_000_000_000, mono_ns=1_000, boot_id="b")
    header = log_header(anchor=anchor, plan=plan, shard=shard, warmup=warmup, api="openai-chat", stream=True)
    records = expected_records(plan, shard=shard, warmup=warmup, api="openai-chat", stream=True)
    return RecordLog(path, header), {r.request_id: r for r in records}, anchor


def test_complete_log_compacts_to_every_row_with_epoch_twins(tmp_path, plan) -> None:
    log, recs, anchor = start_log(tmp_path / "requests.jsonl", plan, warmup=1)
    log.event("arm", arm="fixed", start_ns=10_000)
    for rid, rec in recs.items():
        rec.planned_ns = 10_000 + rid
        rec.sent_ns = 10_500 + rid
        log.sent(rec)
        rec.first_byte_ns = 20_000
        rec.chunk_ns = [30_000, 31_000]
        rec.first_token_ns, rec.last_token_ns = 30_000, 31_000
        rec.prompt_tokens, rec.output_tokens = 5, 2
        rec.server_timing = {"x-queue-time": 3}
        rec.finish("ok", 40_000)
        log.row(rec)
    log.event("end", t=50_000, reason="completed")
    log.close()

    out = compact_log(tmp_path / "requests.jsonl", plan)
    frame = out.frame
    assert not out.recovered and out.issues == []
    assert list(frame.columns) == list(RECORD_COLUMNS)
    assert frame["request_id"].tolist() == [-1, *range(12)]
    assert (frame["status"] == "ok").all()
    assert frame["lateness_ns"].tolist() == [500] * 13
    assert frame["chunks"].tolist() == [2] * 13
    for column in TIME_COLUMNS:
        twin = column.replace("_ns", "_epoch_ns")
        assert (frame[twin] - frame[column] == anchor.epoch_ns - anchor.mono_ns).all()
    assert json.loads(frame["server_timing"].iloc[0]) == {"x-queue-time": 3}

    path = write_requests(frame, tmp_path / "requests.parquet", anchor)
    again, anchor_again = read_requests(path)
    assert anchor_again == anchor
    assert again["request_id"].tolist() == frame["request_id"].tolist()
    assert [list(v) for v in again["chunk_ns"]] == [[30_000, 31_000]] * 13
    assert str(again["planned_ns"].dtype) == "Int64"


def test_torn_log_is_recovered(tmp_path, plan) -> None:
    """What a SIGKILL leaves: rows for some requests, 'sent' lines for others, a torn last line."""
    path = tmp_path / "requests.jsonl"
    log, recs, _ = start_log(path, plan)
    log.event("arm", arm="fixed", start_ns=1_000_000)
    done, inflight = recs[0], recs[1]
    for rec in (done, inflight):
        rec.planned_ns = 1_000_000
        rec.sent_ns = 1_000_100
        log.sent(rec)
    done.finish("ok", 2_000_000)
    log.row(done)
    log.event("tick", t=5_000_000)
    log.close()
    with path.open("ab") as f:
        f.write(b'{"k":"row","request_id":2,"ar')  # the process died mid-write

    out = compact_log(path, plan)
    frame = out.frame.set_index("request_id")
    assert out.recovered
    assert any("incomplete last line" in issue for issue in out.issues)
    assert len(frame) == 12
    assert frame.loc[0, "status"] == "ok"
    assert frame.loc[1, "status"] == "cancelled"
    assert frame.loc[1, "done_ns"] == 5_000_000  # the last sign of life
    assert "rebuilt from the log" in frame.loc[1, "error"]
    not_sent = frame.drop(index=[0, 1])
    assert (not_sent["status"] == "not_sent").all()
    assert not_sent["done_ns"].isna().all() and not_sent["sent_ns"].isna().all()
    # The started arm's unsent rows still know when they were due; the unstarted arm's do not.
    fixed = not_sent[not_sent["arm"] == "fixed"]
    offsets = plan.rows.set_index("request_id").loc[fixed.index, "offset_s"].to_numpy()
    assert np.allclose(fixed["planned_ns"].to_numpy(dtype=float), 1_000_000 + offsets * 1e9)
    assert not_sent.loc[not_sent["arm"] == "concurrency", "planned_ns"].isna().all()


def test_bad_logs_are_input_errors(tmp_path, plan) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        compact_log(empty, plan)

    damaged = tmp_path / "damaged.jsonl"
    start_log(damaged, plan)[0].close()
    with damaged.open("a") as f:
        f.write("not json\n" + json.dumps({"k": "tick", "t": 1}) + "\n")
    with pytest.raises(InputError, match="line 2 is not valid JSON"):
        compact_log(damaged, plan)

    other = build_plan(PlanSpec.parse({"prompts": "synthetic", "n": 3, "seed": 9}))
    good = tmp_path / "good.jsonl"
    start_log(good, plan)[0].close()
    with pytest.raises(InputError, match="another plan"):
        compact_log(good, other)


def test_duplicate_rows_keep_the_first(tmp_path, plan) -> None:
    log, recs, _ = start_log(tmp_path / "requests.jsonl", plan)
    rec = recs[3]
    rec.sent_ns = 10
    rec.finish("ok", 20)
    log.row(rec)
    rec.status = "timeout"
    log.row(rec)
    log.close()
    out = compact_log(tmp_path / "requests.jsonl", plan)
    assert out.frame.set_index("request_id").loc[3, "status"] == "ok"
    assert any("more than one terminal row" in issue for issue in out.issues)
