"""Sample-log compatibility: `/samples` sends state and host energy rows only to a client that asks
(`state=1`, schema version 2), so a joulebench from before them keeps reading a new sidecar; readers
read both versions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from fake_pynvml import FakeGpu

from foundation.errors import InputError
from harness.power.rapl import ROOT_ENV
from harness.power.samplelog import (
    COLUMNS,
    ENERGY_ROW,
    HOST_ROW,
    POWER_ROW,
    STATE_ROW,
    SampleRing,
    base_page,
    read_log_file,
)
from harness.power.sources import SidecarSource


def _fake_rapl(root: Path) -> None:
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("1234000\n")
    (zone / "max_energy_range_uj").write_text("10000000\n")


def test_an_older_client_gets_version_1_pages_and_the_harness_asks_for_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_sidecar
) -> None:
    _fake_rapl(tmp_path / "powercap")
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "powercap"))
    log = tmp_path / "samples.jsonl"
    car, _, url = fake_sidecar([FakeGpu("GPU-0")], interval_s=0.02, log_path=log)
    time.sleep(0.4)
    full = httpx.get(url + "/samples", params={"since": 0, "state": 1}).json()
    assert full["schema_version"] == 2 and {"s", "h"} <= {r[3] for r in full["rows"]}
    assert full["phase_jitter"] is True

    # What joulebench before state rows asks for and checks: version 1, eight-column "p"/"e" rows.
    old = httpx.get(url + "/samples", params={"since": 0}).json()
    assert old["schema_version"] == 1 and old["columns"] == list(COLUMNS)
    assert old["rows"] and all(len(r) == len(COLUMNS) and r[3] in ("p", "e") for r in old["rows"])
    assert not {"state_columns", "state_interval_s", "host_energy"} & old.keys()
    power_and_energy = [r for r in full["rows"] if r[3] in ("p", "e")]
    assert old["rows"][: len(power_and_energy)] == power_and_energy

    # The harness's own poll asks for them: the run keeps the GPUs' state and the host's energy.
    source = SidecarSource(url)
    source.poll()
    (session,) = source.sessions()
    assert session.header["schema_version"] == 2 and "host_energy" in session.header
    assert {STATE_ROW, HOST_ROW} <= set(session.rows.kind.tolist())

    # The --log file holds every row kind, as version 2, with the sampler's phase jitter.
    car.stop()
    (logged,) = read_log_file(log)
    assert logged.header["schema_version"] == 2 and logged.header["phase_jitter"] is True
    assert {POWER_ROW, ENERGY_ROW, STATE_ROW, HOST_ROW} <= set(logged.rows.kind.tolist())


def test_a_version_1_page_is_filled_past_telemetry_rows() -> None:
    """A version-1 reader takes a page shorter than its limit for the end of the ring."""
    ring = SampleRing(capacity=12)
    for t in range(20):  # the ring wraps: seq 0-7 are lost
        if t % 3 == 0:
            ring.append_power(t, 0, 100.0 + t, None)
        elif t % 3 == 1:
            ring.append_state(t, 0, [1.0, 2.0, 3.0, 4.0, 0])
        else:
            ring.append_host_energy(t, 0, float(t))
    rows, dropped, cursor = base_page(ring, 0, 3)
    assert rows.seq.tolist() == [9, 12, 15] and dropped == 8 and cursor == 16
    rows, dropped, cursor = base_page(ring, cursor, 3)
    assert rows.seq.tolist() == [18] and dropped == 0 and cursor == 20  # the end: a short page


def test_readers_read_both_versions_and_name_a_newer_one(tmp_path: Path) -> None:
    header = {
        "format": "joulebench-samples", "schema_version": 1, "backend": "nvml", "interval_s": 0.1,
        "clock": {"epoch_ns": 1, "mono_ns": 1, "boot_id": "b"}, "gpus": [], "columns": list(COLUMNS),
    }  # fmt: skip
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps(header) + "\n" + json.dumps([0, 5, 0, "p", 100.0, None, None, 0]) + "\n")
    (session,) = read_log_file(old)
    assert session.rows.kind.tolist() == [POWER_ROW]
    new = tmp_path / "new.jsonl"
    state = [1, 6, 0, "s", None, None, None, 0, 1.9e9, 2.6e9, 40.0, 700.0, 4]
    new.write_text(json.dumps({**header, "schema_version": 2}) + "\n" + json.dumps(state) + "\n")
    (session,) = read_log_file(new)
    assert session.rows.kind.tolist() == [STATE_ROW]
    newer = tmp_path / "newer.jsonl"
    newer.write_text(json.dumps({**header, "schema_version": 3}) + "\n")
    with pytest.raises(InputError, match=r"newer.jsonl:1: unsupported schema_version 3 \(this"):
        read_log_file(newer)
