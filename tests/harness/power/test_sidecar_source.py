"""SidecarSource: the sample log read back (HTTP and file) as EnergySeries on the harness clock."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from fake_pynvml import FakeGpu

from foundation.errors import InputError
from harness.power.clocksync import ClockOffset, estimate_clock_offset
from harness.power.sources import SidecarSource, open_source
from harness.runfolder.power_file import RawSampleLog


def mean_power(series, t0: int, t1: int) -> float:
    e = np.interp([t0, t1], series.t_ns, series.energy_j)
    return (e[1] - e[0]) / ((t1 - t0) / 1e9)


def test_http_read_follows_the_power_and_matches_the_counter(fake_sidecar, tmp_path):
    car, fake, url = fake_sidecar(
        [FakeGpu("GPU-a", power_w=250.0), FakeGpu("GPU-b", power_w=100.0, counter=False)],
        interval_s=0.02,
        log_path=tmp_path / "log.jsonl",
    )
    source = SidecarSource(url)
    time.sleep(1.6)
    assert source.poll() > 50  # polled during the run, as `joulebench run` does
    recording = RawSampleLog(tmp_path)  # what was polled so far, then every page as it comes
    source.record(recording)
    t_change = time.monotonic_ns()
    fake.set_power(0, 400.0)
    time.sleep(1.6)
    # Read at least one counter period (0.5 s) after the window's end, so a reading brackets it.
    start, end = t_change - 10**9, time.monotonic_ns() - 7 * 10**8
    data = source.read(start, end)
    recording.close()
    assert data.clock["mode"] == "same-host" and data.issues == []
    a, b = data.series
    assert (a.gpu, a.uuid, a.integrated, b.gpu, b.integrated) == ("0", "GPU-a", False, "1", True)
    assert a.issues == [] and a.t_ns[0] <= start and a.t_ns[-1] >= end
    # The shape between counter readings follows instant power: ~250 W before, ~400 W after the change.
    assert mean_power(a, start, t_change - 2 * 10**8) == pytest.approx(250.0, rel=0.1)
    assert mean_power(a, t_change + 4 * 10**8, end) == pytest.approx(400.0, rel=0.1)
    assert mean_power(b, start, end) == pytest.approx(100.0, rel=0.02)
    assert np.nanmax(a.power_w) == 400.0

    # The same rows from the --log file give the same series, and so does the run's recording.
    car.stop()
    whole = SidecarSource(tmp_path / "log.jsonl").read(start, end)
    assert np.array_equal(whole.series[0].t_ns, a.t_ns)
    assert np.allclose(whole.series[0].energy_j, a.energy_j)
    again = open_source(f"sidecar={recording.path}").read(start, end)
    assert np.array_equal(again.series[1].t_ns, b.t_ns) and np.allclose(again.series[1].energy_j, b.energy_j)


def test_clock_offset_from_the_time_endpoint(fake_sidecar):
    _, _, url = fake_sidecar()
    offset = estimate_clock_offset(url)
    assert offset.same_kernel and offset.mono_offset_ns == 0
    assert 0 < offset.rtt_ns < 10**9
    assert abs(offset.epoch_offset_ns) < offset.rtt_ns + 10**7  # same host: the clocks agree
    with pytest.raises(InputError, match="cannot read the sidecar's clock"):
        estimate_clock_offset("http://127.0.0.1:9", probes=1)


def test_another_hosts_log_is_mapped_through_epoch_or_a_measured_offset(fake_sidecar, tmp_path):
    log = tmp_path / "log.jsonl"
    car, _, _ = fake_sidecar(interval_s=0.05, log_path=log)
    time.sleep(1.2)
    car.stop()
    same = SidecarSource(log).read()
    lines = log.read_text().splitlines()
    header = json.loads(lines[0])
    header["clock"]["boot_id"] = "another-host"
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")

    via_epoch = SidecarSource(foreign).read()
    assert via_epoch.clock["mode"] == "epoch"
    # Both processes here read the same clocks, so epoch mapping lands within the anchors' jitter.
    assert np.all(np.abs(via_epoch.series[0].t_ns - same.series[0].t_ns) < 5 * 10**6)

    offset = ClockOffset(
        mono_offset_ns=5 * 10**9, epoch_offset_ns=0, rtt_ns=1000, remote_boot_id="another-host",
        same_kernel=False,
    )  # fmt: skip
    via_offset = SidecarSource(foreign, offset=offset).read()
    assert via_offset.clock["mode"] == "offset" and via_offset.clock["uncertainty_ns"] == 500  # rtt / 2
    assert np.array_equal(via_offset.series[0].t_ns, same.series[0].t_ns + 5 * 10**9)


def test_a_sidecar_restart_between_polls_starts_a_new_session(fake_sidecar):
    car, _, url = fake_sidecar(interval_s=0.05)
    source = SidecarSource(url)
    # Long enough that the old counter is above what the new one counts in its first period: a real
    # counter (since driver load) always is, and only then does the drop read as a restart.
    time.sleep(1.2)
    source.poll()
    port = car.address[1]
    car.stop()
    t_restart = time.monotonic_ns()
    # A new process on the same address, whose (fake) counter starts again from zero.
    fake_sidecar(interval_s=0.05, port=port)
    time.sleep(0.6)
    data = source.read()
    assert any("restarted between polls" in issue for issue in data.issues)
    assert len(source.sessions()) == 2 and data.clock["sessions"] == 2
    assert source.sessions()[1].rows.seq[0] == 0
    (series,) = data.series  # one series across both sessions, the counter restart stitched
    assert series.t_ns[0] < t_restart < series.t_ns[-1]
    assert any("energy counter reset between" in issue for issue in series.issues)


def test_rows_lost_to_a_wrapped_ring_are_reported(fake_sidecar):
    _, _, url = fake_sidecar(interval_s=0.01, ring_capacity=40)
    time.sleep(1.0)
    data = SidecarSource(url).read()
    assert any("rows were lost before they were read" in issue for issue in data.issues)


def test_unreachable_sidecar_and_bad_specs(tmp_path):
    with pytest.raises(InputError, match="cannot read the sidecar"):
        SidecarSource("http://127.0.0.1:9").read()
    with pytest.raises(InputError, match="expected KIND=LOCATION"):
        open_source("nvml=http://x")
    with pytest.raises(InputError, match="cannot read the sample log"):
        open_source(f"sidecar={tmp_path / 'none.jsonl'}").read()
    for kind in ("sidecar", "prometheus", "dcgm"):
        with pytest.raises(InputError, match=r"'http://\[::1' is not a valid URL"):
            open_source(f"{kind}=http://[::1")
