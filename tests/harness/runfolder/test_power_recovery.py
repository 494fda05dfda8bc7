"""A run killed before its power stage saved power.parquet: the sidecar's rows it appended as it polled
(power_samples.jsonl) rebuild it over the window the request log shows, when the folder is read."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from joulebench_testkit import run_main

from harness.clock import ClockAnchor
from harness.power.samplelog import COLUMNS, FORMAT, SampleRows, read_log_file
from harness.records import Shard
from harness.runfolder import RunFolder
from harness.runfolder.power_file import POWER_FILE, RAW_SAMPLES_FILE, RawSampleLog, load_power
from harness.runfolder.request_log import RecordLog, expected_records, log_header
from traffic.builder import build_plan
from traffic.spec import PlanSpec

S = 1_000_000_000
WATTS = 100.0


@pytest.fixture(scope="module")
def plan():
    return build_plan(PlanSpec.parse({"prompts": "synthetic", "n": 4}))


def sidecar_header(anchor: ClockAnchor, backend: str = "nvml") -> dict:
    return {
        "format": FORMAT, "schema_version": 1, "sidecar_version": "test", "backend": backend,
        "clock": anchor.as_dict(), "interval_s": 0.1, "counter_interval_s": 0.5,
        "gpus": [{"index": 0, "uuid": "GPU-a", "name": "H100", "driver": "580", "energy_method": "counter",
                  "instant_power": "field"}],
        "columns": list(COLUMNS),
    }  # fmt: skip


def killed_run(tmp_path, plan, sources: list[dict], samples: bool) -> tuple[RunFolder, int]:
    """A folder as a SIGKILL 5 s into the plan leaves it: the log (arm start, two sends, ticks), the
    idle window before, the power section the stage wrote at the start, the samples polled so far."""
    folder = RunFolder.create(tmp_path, plan)
    anchor = ClockAnchor.now()
    t0 = anchor.mono_ns
    log = RecordLog(
        folder.log_path,
        log_header(anchor=anchor, plan=plan, shard=Shard(), warmup=0, api="openai-chat", stream=True),
    )
    log.event("arm", arm=plan.header.arms[0].name, start_ns=t0)
    records = expected_records(plan, shard=Shard(), warmup=0, api="openai-chat", stream=True)
    for i, rec in enumerate(records[:2]):
        rec.sent_ns = t0 + i * S
        log.sent(rec)
    log.event("tick", t=t0 + 5 * S)
    log.close()
    folder.update_manifest(
        idle={"pre": {"start_ns": t0 - S, "end_ns": t0}, "post": None, "seconds": 1.0},
        power={"primary": sources[0]["kind"], "gpus": None, "sources": sources},
    )
    if samples:
        recording = RawSampleLog(folder.path)
        header = sidecar_header(anchor)
        for page_start in range(-2, 6):  # one poll a second, the last one 0.5 s after the last tick
            rows = []
            for k in range(10):
                t = t0 + page_start * S + k * S // 10
                rows.append([len(rows), t, 0, "p", WATTS, WATTS, None, 0])
                if k % 5 == 0:
                    rows.append([len(rows), t, 0, "e", None, None, 861_000.0 + WATTS * (t - t0) / S, 0])
            recording(header, SampleRows.from_lists(rows), 0)
        recording.close()
        with open(folder.path / RAW_SAMPLES_FILE, "a") as out:
            out.write("[999, 12")  # the line the kill cut short
    return folder, t0


SIDECAR = [{"kind": "sidecar", "location": "http://gpu:9400", "backend": "nvml"}]


def test_reading_a_killed_run_rebuilds_its_power(tmp_path, plan) -> None:
    folder, t0 = killed_run(tmp_path, plan, SIDECAR, samples=True)
    assert not (folder.path / POWER_FILE).exists()
    RunFolder.open(folder.path).requests()  # what `joulebench report` does first
    data = load_power(folder.path)
    (series,) = data.series
    energy = np.interp([t0 - S, t0 + 5 * S], series.t_ns, series.energy_j)
    assert energy[1] - energy[0] == pytest.approx(WATTS * 6)  # idle before + the 5 s of the plan
    assert series.t_ns[0] <= t0 - S and series.t_ns[-1] >= t0 + 5 * S
    assert "rebuilt from power_samples.jsonl after the run was killed" in data.issues[0]
    manifest = folder.manifest()
    assert manifest["power"]["window"] == {"start_ns": t0 - S, "end_ns": t0 + 5 * S}
    assert manifest["power"]["recovered"] == {"from": RAW_SAMPLES_FILE, "primary_was": "sidecar"}
    assert manifest["energy"] == {"counter_period_s": 0.1}  # NVML's, as the run would have recorded


def test_prometheus_only_says_what_to_re_read(tmp_path, plan, capsys) -> None:
    prom = [{"kind": "prometheus", "location": "http://prom:9090", "backend": "nvml"}]
    folder, _ = killed_run(tmp_path, plan, prom, samples=False)
    found = RunFolder.open(folder.path).recover_power()
    assert found is not None and found.data is None
    (note,) = found.notes
    assert "prometheus http://prom:9090 was not saved during the run" in note and "re-read it over 20" in note
    assert not (folder.path / POWER_FILE).exists()
    assert run_main(["recover", str(folder.path)]) == 0
    out = capsys.readouterr().out
    assert "power: not rebuilt: none of its power sources was saved during the run" in out
    assert f"note: {note}" in out


def test_a_run_that_saved_its_power_or_had_none_is_left_alone(tmp_path, plan) -> None:
    folder, _ = killed_run(tmp_path, plan, SIDECAR, samples=True)
    assert folder.recover_power() is not None
    mtime = os.stat(folder.path / POWER_FILE).st_mtime_ns
    assert folder.recover_power() is None and os.stat(folder.path / POWER_FILE).st_mtime_ns == mtime
    bare = RunFolder.create(tmp_path / "bare", plan)
    assert bare.recover_power() is None


def test_the_recording_is_the_log_format_and_stops_cleanly_on_a_write_error(tmp_path, monkeypatch) -> None:
    anchor = ClockAnchor.now()
    recording = RawSampleLog(tmp_path)
    page = SampleRows.from_lists([[0, anchor.mono_ns, 0, "e", None, None, 5.0, 0]])
    recording(sidecar_header(anchor), page, 0)
    recording(sidecar_header(anchor), page, 3)  # same session: no second header; 3 rows lost
    restarted = {**sidecar_header(anchor), "clock": {**anchor.as_dict(), "mono_ns": 1}}
    recording(restarted, page, 0)

    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", disk_full)
        recording(restarted, page, 0)
    assert "writing stopped (No space left on device)" in (recording.error or "")
    recording(restarted, page, 0)  # nothing more is written, nothing is raised
    first, second = read_log_file(recording.path)
    assert (len(first.rows), first.dropped, len(second.rows)) == (2, 3, 1)


def test_the_rebuild_keeps_only_the_runs_gpus(tmp_path, plan) -> None:
    folder, _ = killed_run(tmp_path, plan, SIDECAR, samples=True)
    power = folder.manifest()["power"]
    folder.update_manifest(power={**power, "gpus": ["3"]})  # the run measured GPU 3 (--gpus 3) only
    RunFolder.open(folder.path).requests()
    data = load_power(folder.path)
    assert data.series == []  # GPU 0 was on the host, not in the run: never summed in
    assert "sidecar: no series for GPU 3 (selected with --gpus)" in data.issues


def killed_before_requests(tmp_path, plan, idle_done: bool) -> tuple[RunFolder, int]:
    """A folder as a SIGKILL before the plan leaves it: the log holds only its header (the run writes it
    as it makes the folder), the samples polled since the anchor; in the warm-up (`idle_done`) the idle
    window before is in the manifest, in the idle capture it is not yet."""
    folder = RunFolder.create(tmp_path, plan)
    anchor = ClockAnchor.now()
    t0 = anchor.mono_ns
    RecordLog(
        folder.log_path,
        log_header(anchor=anchor, plan=plan, shard=Shard(), warmup=2, api="openai-chat", stream=True),
    ).close()
    idle = {"idle": {"pre": {"start_ns": t0, "end_ns": t0 + 2 * S}, "post": None, "seconds": 2.0}}
    folder.update_manifest(
        power={"primary": "sidecar", "gpus": None, "sources": SIDECAR}, **(idle if idle_done else {})
    )
    recording = RawSampleLog(folder.path)
    for page in range(3):  # polled once a second from the anchor: the last row 2.9 s after it
        rows = []
        for k in range(10):
            t = t0 + page * S + k * S // 10
            rows.append([len(rows), t, 0, "p", WATTS, WATTS, None, 0])
            rows.append([len(rows), t, 0, "e", None, None, 1000.0 + WATTS * (t - t0) / S, 0])
        recording(sidecar_header(anchor), SampleRows.from_lists(rows), 0)
    recording.close()
    return folder, t0


@pytest.mark.parametrize(("idle_done", "end_s"), [(False, 2.9), (True, 2.0)], ids=["in-idle", "in-warm-up"])
def test_a_run_killed_before_its_requests_gets_its_idle_power(
    tmp_path, plan, capsys, idle_done, end_s
) -> None:
    """In the idle capture: from the anchor to the last sample polled; in the warm-up (nothing in the log
    but the header): over the idle window the manifest holds."""
    folder, t0 = killed_before_requests(tmp_path, plan, idle_done)
    assert run_main(["recover", str(folder.path)]) == 0
    out = capsys.readouterr().out
    assert f"{len(plan.rows)} requests (not_sent {len(plan.rows)})" in out
    assert "power: rebuilt power.parquet from power_samples.jsonl" in out
    end = t0 + round(end_s * S)
    assert folder.manifest()["power"]["window"] == {"start_ns": t0, "end_ns": end}
    (series,) = load_power(folder.path).series
    energy = np.interp([t0, end], series.t_ns, series.energy_j)
    assert energy[1] - energy[0] == pytest.approx(WATTS * end_s)


def test_a_run_killed_before_it_polled_power_says_so(tmp_path, plan, capsys) -> None:
    folder, _ = killed_before_requests(tmp_path, plan, idle_done=False)
    (folder.path / RAW_SAMPLES_FILE).write_bytes(b"")  # the power stage had not polled yet
    assert run_main(["recover", str(folder.path)]) == 0
    out = capsys.readouterr().out
    assert (
        "power: not rebuilt: the run was killed before it polled an energy reading taken after its start"
        in out
    )
    assert not (folder.path / POWER_FILE).exists()
