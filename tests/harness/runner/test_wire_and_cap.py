"""Against the real mock server over HTTP (issue 19): every sent request has a wire stamp after its
dispatch stamp, whichever transport; `--max-in-flight N` never lets more than N be in flight, records
each held request's wait, and keeps exactly one row per request."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from runner_helpers import max_in_flight, one_row_each, plan_of, run_plan


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_every_request_reaches_the_wire_after_its_dispatch(fast_mock, tmp_path, transport) -> None:
    plan = plan_of("fixed:interval=0.01", n=20)
    rows = one_row_each(run_plan(fast_mock.url, plan, tmp_path, transport=transport, warmup=1), plan)
    assert (rows["status"] == "ok").all()
    sent, wire = rows["sent_ns"].to_numpy(dtype=np.int64), rows["wire_ns"].to_numpy(dtype=np.int64)
    first_byte = rows["first_byte_ns"].to_numpy(dtype=np.int64)
    assert ((sent < wire) & (wire < first_byte)).all()
    assert (rows["wire_epoch_ns"] - rows["wire_ns"] == rows["sent_epoch_ns"] - rows["sent_ns"]).all()
    assert rows["capped_ns"].isna().all()  # no cap given: nothing to be held at


def test_the_in_flight_cap_holds_and_records_every_held_request(fast_mock, tmp_path) -> None:
    # 5 ms apart, each taking ~64 steps of 1 ms: about a dozen would be in flight at once without the cap.
    plan = plan_of("fixed:interval=0.005", n=40, max_tokens=64)
    result = run_plan(fast_mock.url, plan, tmp_path, max_in_flight=3)
    rows = one_row_each(result, plan)
    assert (rows["status"] == "ok").all()
    assert max_in_flight(rows) <= 3
    held = rows[rows["capped_ns"] > 0]
    assert len(held) >= 20 and rows["capped_ns"].notna().all()
    # A held request's wait is part of its lateness (it was sent that much later).
    assert (held["lateness_ns"] >= held["capped_ns"]).all()
    lines = [json.loads(line) for line in result.folder.log_path.read_text().splitlines()]
    rows_logged = Counter(line["request_id"] for line in lines if line["k"] == "row")
    assert set(rows_logged.values()) == {1} and len(rows_logged) == len(plan.rows)
    manifest = json.loads((result.folder.path / "manifest.json").read_text())
    assert manifest["options"]["max_in_flight"] == 3 and manifest["connections"]["pool"] == 3
    client = manifest["arms"][0]["client"]
    assert client["loop_lag_ms"]["n"] > 0 and 0 < client["cpu_share"] < 1
