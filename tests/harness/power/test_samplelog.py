"""The sample ring, its JSON and file forms, and the sidecar's /samples, /time, /healthz endpoints."""

from __future__ import annotations

import json
import math
import time

import httpx
import numpy as np
import pytest
from fake_pynvml import FakeGpu

from foundation.errors import InputError
from harness.clock import ClockAnchor, boot_id
from harness.power.samplelog import COLUMNS, SampleRing, SampleRows, read_log_file


def test_ring_wraps_and_reports_what_was_overwritten():
    ring = SampleRing(capacity=10)
    for i in range(25):
        ring.append_power(1000 + i, i % 2, float(i), None)
    rows, dropped, cursor = ring.since(0)
    assert dropped == 15 and rows.seq.tolist() == list(range(15, 25)) and cursor == 25
    assert rows.t_ns.tolist() == list(range(1015, 1025))
    rows, dropped, cursor = ring.since(20, limit=3)
    assert dropped == 0 and rows.seq.tolist() == [20, 21, 22] and cursor == 23
    rows, dropped, cursor = ring.since(99)
    assert (len(rows), dropped, cursor) == (0, 0, 25)  # a cursor from the future: back to the present


def test_json_rows_round_trip_with_nulls():
    ring = SampleRing(8)
    ring.append_power(5, 0, 123.4567, 120.0, flags=2)
    ring.append_energy(6, 1, 98765.4321, flags=1)
    lists = ring.since(0)[0].to_lists()
    assert lists == [[0, 5, 0, "p", 123.457, 120.0, None, 2], [1, 6, 1, "e", None, None, 98765.432, 1]]
    back = SampleRows.from_lists(json.loads(json.dumps(lists)))
    assert back.to_lists() == lists
    assert math.isnan(back.energy_j[0]) and back.energy_j[1] == 98765.432
    with pytest.raises(ValueError, match="row 0"):
        SampleRows.from_lists([[0, 5, 0, "x", None, None, None, 0]])


def test_samples_endpoint_pages_with_a_cursor(fake_sidecar):
    _, _, url = fake_sidecar([FakeGpu("GPU-0"), FakeGpu("GPU-1")], interval_s=0.02)
    time.sleep(0.8)
    first = httpx.get(url + "/samples", params={"since": 0, "limit": 7, "state": 1}).json()
    assert first["format"] == "joulebench-samples" and first["columns"] == list(COLUMNS)
    assert ClockAnchor.from_dict(first["clock"]).boot_id == boot_id()
    assert [g["uuid"] for g in first["gpus"]] == ["GPU-0", "GPU-1"]
    assert (first["interval_s"], first["counter_interval_s"]) == (0.02, 0.5)
    assert len(first["rows"]) == 7 and first["next"] == 7 and first["dropped"] == 0
    rest = httpx.get(url + "/samples", params={"since": first["next"], "state": 1}).json()
    seqs = [r[0] for r in first["rows"] + rest["rows"]]
    assert seqs == list(range(len(seqs))) and rest["next"] == seqs[-1] + 1
    kinds = {r[3] for r in first["rows"] + rest["rows"]}
    assert kinds == {"p", "e", "s"}  # power, energy and the GPUs' state (clocks, limit, throttle)
    # Rows carry the sidecar's monotonic clock, like the request log.
    t = np.array([r[1] for r in rest["rows"]])
    assert abs(int(t.max()) - time.monotonic_ns()) < 2e9
    # The next page starts where this one ended, once the sampler has polled again (a busy machine may
    # take a while: wait for it up to a deadline).
    deadline = time.monotonic() + 5
    later = httpx.get(url + "/samples", params={"since": rest["next"], "state": 1}).json()
    while not later["rows"] and time.monotonic() < deadline:
        time.sleep(0.02)
        later = httpx.get(url + "/samples", params={"since": rest["next"], "state": 1}).json()
    assert later["rows"] and later["rows"][0][0] == rest["next"]


@pytest.mark.parametrize("query", ["since=-1", "since=abc", "limit=0", "limit=999999999", "state=2"])
def test_samples_endpoint_rejects_bad_parameters(fake_sidecar, query):
    _, _, url = fake_sidecar()
    response = httpx.get(f"{url}/samples?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json()["error"]


def test_time_health_and_unknown_paths(fake_sidecar):
    _, _, url = fake_sidecar()
    before = time.time_ns()
    now = httpx.get(url + "/time").json()
    assert before - 10**8 < now["epoch_ns"] < time.time_ns() + 10**8
    assert abs(now["mono_ns"] - time.monotonic_ns()) < 10**9 and now["boot_id"] == boot_id()
    health = httpx.get(url + "/healthz").json()
    assert (
        health["status"] == "ok" and health["backend"] == "nvml" and health["gpus"][0]["method"] == "counter"
    )
    assert httpx.get(url + "/nope").status_code == 404


def test_log_file_holds_every_row_and_a_session_per_start(tmp_path, fake_sidecar):
    log = tmp_path / "samples.jsonl"
    car, _, _ = fake_sidecar([FakeGpu("GPU-0")], interval_s=0.02, log_path=log)
    time.sleep(0.7)
    car.stop()  # flushes the log (the fixture's second stop is a no-op)
    ring_rows = car.ring.since(0)[0].to_lists()
    car2, _, _ = fake_sidecar([FakeGpu("GPU-0")], interval_s=0.05, log_path=log)
    time.sleep(0.4)
    car2.stop()
    first, second = read_log_file(log)
    assert first.rows.to_lists() == ring_rows and len(ring_rows) > 20
    assert first.header["interval_s"] == 0.02 and second.header["interval_s"] == 0.05
    assert first.header["clock"] != second.header["clock"] and len(second.rows) > 3


def test_log_file_damage(tmp_path, fake_sidecar):
    log = tmp_path / "samples.jsonl"
    car, _, _ = fake_sidecar(log_path=log)
    time.sleep(0.3)
    car.stop()
    text = log.read_text()
    cut = tmp_path / "cut.jsonl"
    cut.write_text(text + '[99, 12, 0, "p", 1')  # a crash mid-line
    (session,) = read_log_file(cut)
    assert any("cut short" in issue for issue in session.issues)
    broken = tmp_path / "broken.jsonl"
    lines = text.splitlines()
    broken.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    with pytest.raises(InputError, match=r"broken.jsonl:2: not JSON"):
        read_log_file(broken)
    with pytest.raises(InputError, match="not a joulebench sample log"):
        (tmp_path / "other.jsonl").write_text('{"columns": []}\n')
        read_log_file(tmp_path / "other.jsonl")
    with pytest.raises(InputError, match="cannot read the sample log"):
        read_log_file(tmp_path / "missing.jsonl")
