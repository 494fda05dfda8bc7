"""A real Prometheus scrapes a sidecar and dcgm-exporter stand-ins; the readers bring the series back.

One Prometheus for the module (it takes a few seconds to start and to collect data). Targets:
- `sidecar-sim`: `joulebench sidecar --backend simulated` (a subprocess) reading the real mock server;
- `sidecar`: an in-process sidecar over fake NVML (250 W on GPU 0 with a counter; 90 W on GPU 1
  without one, so integrated): exact known power for exact checks;
- `dcgm-t4`: the recorded T4 exposition, counter advancing at its recorded 8.969 W;
- `dcgm-mig`: the recorded A30 MIG excerpt (each GPU's counter repeated per GPU instance);
- `dcgm-nocounter`: the T4 exposition without the energy counter (power fallback).
"""

from __future__ import annotations

import time
from contextlib import ExitStack

import httpx
import numpy as np
import pytest
from dcgm_exporter_standin import DcgmExporterStandIn
from fake_pynvml import FakeGpu, FakeNvml
from joulebench_testkit import PrometheusServer, run_mock_server, simulated_sidecar

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.power.nvml import NvmlBackend
from harness.power.samplelog import ENERGY_ROW
from harness.power.sidecar_server import Sidecar
from harness.power.sources import DcgmSource, PrometheusSource

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]

T4_UUID = "GPU-20c56d28-0da5-6d26-a36a-e7af1ce2586e"
T4_WATTS = 8.969  # DCGM_FI_DEV_POWER_USAGE in the recorded exposition


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    fake = FakeNvml(
        [FakeGpu("GPU-side-0", power_w=250.0), FakeGpu("GPU-side-1", power_w=90.0, counter=False)]
    )
    car = Sidecar(NvmlBackend(nvml=fake), host="127.0.0.1", port=0, interval_s=0.05)
    car.start()
    exporters = {
        "dcgm-t4": DcgmExporterStandIn("datadog_t4_metrics.txt", {"0": T4_WATTS}, collect_s=1.0),
        "dcgm-mig": DcgmExporterStandIn(
            "a30_mig_issue317_excerpt.txt", {"2": 120.0, "3": 60.0}, collect_s=0.5
        ),
        "dcgm-nocounter": DcgmExporterStandIn("datadog_t4_metrics.txt", {"0": T4_WATTS}, energy=False),
    }
    with ExitStack() as stack:
        stack.callback(car.stop)
        for e in exporters.values():
            stack.callback(e.close)
        logs = tmp_path_factory.mktemp("logs")
        mock = stack.enter_context(run_mock_server(log_dir=logs))
        sim = stack.enter_context(simulated_sidecar(mock.url, "--interval", "0.1", log_dir=logs))
        sim_target = sim.url.removeprefix("http://")
        jobs = {"sidecar": [f"127.0.0.1:{car.address[1]}"], "sidecar-sim": [sim_target]}
        jobs |= {job: [f"127.0.0.1:{e.port}"] for job, e in exporters.items()}
        prom = PrometheusServer(tmp_path_factory.mktemp("prometheus"), jobs)
        stack.callback(prom.stop)
        prom.wait_targets_up()
        start = time.monotonic_ns()
        mock_start = httpx.get(mock.url + "/sim/gpu").json()
        time.sleep(5.0)
        mock_end = httpx.get(mock.url + "/sim/gpu").json()
        end = time.monotonic_ns()
        time.sleep(1.0)  # a counter reading and a scrape after the window's end
        yield {"prom": prom, "sidecar": car, "start": start, "end": end, "mock": (mock_start, mock_end)}


def slope_w(series) -> float:
    return (series.energy_j[-1] - series.energy_j[0]) / ((series.t_ns[-1] - series.t_ns[0]) / 1e9)


def test_our_counter_round_trips_through_prometheus(stack):
    # Step = the scrape interval, so no scraped reading is skipped.
    source = PrometheusSource(stack["prom"].url, selector='job="sidecar"', step_s=0.25)
    data = source.read(stack["start"], stack["end"])
    assert data.issues == [] and data.clock["mode"] == "epoch"
    a, b = data.series
    assert (a.gpu, a.uuid, a.integrated, b.gpu, b.uuid, b.integrated) == (
        "0", "GPU-side-0", False, "1", "GPU-side-1", True
    )  # fmt: skip
    assert a.t_ns[0] <= stack["start"] and a.t_ns[-1] >= stack["end"] and a.issues == []
    assert len(a.t_ns) >= 10  # a reading per counter period (0.5 s) over 5 s
    # Every (time, energy) Prometheus returns is one of the sidecar's own counter readings: the value
    # is placed at the moment it was read, not at the scrape.
    rows, *_ = stack["sidecar"].ring.since(0)
    mine = (rows.gpu == 0) & (rows.kind == ENERGY_ROW)
    read_t, read_j = rows.t_ns[mine], rows.energy_j[mine]
    nearest = np.abs(read_t[None, :] - a.t_ns[:, None]).argmin(axis=1)
    assert np.all(np.abs(read_t[nearest] - a.t_ns) <= 1000)  # µs rounding of the read timestamp
    assert np.allclose(read_j[nearest], a.energy_j, rtol=0, atol=1e-6)
    assert slope_w(a) == pytest.approx(250.0, rel=0.05)
    assert slope_w(b) == pytest.approx(90.0, rel=0.05)


def test_long_ranges_are_queried_in_chunks(stack):
    # 1 ms steps over the window (+ margins) are > 11,000 points: Prometheus' per-query limit.
    anchor = ClockAnchor.now()  # one anchor for both, so both map epoch times identically
    fine = PrometheusSource(stack["prom"].url, selector='job="sidecar",gpu="0"', step_s=0.001, anchor=anchor)
    coarse = PrometheusSource(stack["prom"].url, selector='job="sidecar",gpu="0"', step_s=0.25, anchor=anchor)
    (a,), (b,) = (
        fine.read(stack["start"], stack["end"]).series,
        coarse.read(stack["start"], stack["end"]).series,
    )
    assert np.array_equal(a.t_ns, b.t_ns) and np.array_equal(a.energy_j, b.energy_j)


def test_the_simulated_sidecar_round_trips_the_mocks_energy(stack):
    """mock server → `joulebench sidecar --backend simulated` → Prometheus → PrometheusSource."""
    first, last = stack["mock"]
    t0, t1 = first["clock"]["mono_ns"], last["clock"]["mono_ns"]
    source = PrometheusSource(stack["prom"].url, selector='job="sidecar-sim"', step_s=0.25)
    data = source.read(t0, t1)
    (gpu,) = data.series
    assert (gpu.gpu, gpu.uuid, gpu.integrated, gpu.issues) == ("0", first["gpus"][0]["uuid"], False, [])
    ours = np.interp([t0, t1], gpu.t_ns, gpu.energy_j)
    truth = last["gpus"][0]["energy_j"] - first["gpus"][0]["energy_j"]
    assert ours[1] - ours[0] == pytest.approx(truth, rel=0.02)


def test_rate_and_increase_give_watts_and_joules(stack):
    prom = stack["prom"]
    (rate,) = prom.query('rate(joulebench_gpu_energy_joules_total{job="sidecar",gpu="0"}[3s])')
    assert float(rate["value"][1]) == pytest.approx(250.0, rel=0.15)
    (increase,) = prom.query('increase(joulebench_gpu_energy_joules_total{job="sidecar",gpu="1"}[4s])')
    assert float(increase["value"][1]) == pytest.approx(90.0 * 4, rel=0.15)
    (power,) = prom.query('joulebench_gpu_power_watts{job="sidecar",gpu="0",kind="instant"}')
    assert float(power["value"][1]) == 250.0


def test_dcgm_counter_maps_to_joules_with_identity(stack):
    source = DcgmSource(stack["prom"].url, selector='job="dcgm-t4"', step_s=0.25)
    data = source.read(stack["start"], stack["end"])
    assert data.issues == [] and data.source.startswith("dcgm via prometheus")
    (t4,) = data.series
    assert (t4.gpu, t4.uuid, t4.name, t4.integrated, t4.source) == ("0", T4_UUID, "Tesla T4", False, "dcgm")
    assert t4.issues == []
    # The recorded counter was 128996013 mJ (plus what the stand-in counted since): joules, not mJ.
    assert 128996.013 <= t4.energy_j[0] < 128996.013 + T4_WATTS * 120
    # One reading per collection tick (1 s), each at the scrape where it first appeared.
    assert np.median(np.diff(t4.t_ns)) / 1e9 == pytest.approx(1.0, abs=0.3)
    assert slope_w(t4) == pytest.approx(T4_WATTS, rel=0.2)


def test_dcgm_mig_copies_are_merged_per_gpu(stack):
    data = DcgmSource(stack["prom"].url, selector='job="dcgm-mig"', step_s=0.25).read(
        stack["start"], stack["end"]
    )
    by_gpu = {s.gpu: s for s in data.series}
    assert set(by_gpu) == {"0", "2", "3"}
    for gpu, watts in (("2", 120.0), ("3", 60.0)):
        s = by_gpu[gpu]
        assert not s.integrated and s.name == "NVIDIA A30"
        assert f"GPU {gpu}: merged 3 dcgm series of one GPU (MIG instances or pod labels)" in s.issues
        assert slope_w(s) == pytest.approx(watts, rel=0.2)
    # GPU 0 has only power in the excerpt: integrated, and said so.
    assert by_gpu["0"].integrated and slope_w(by_gpu["0"]) == pytest.approx(52.7, rel=0.01)


def test_dcgm_without_counter_integrates_power(stack):
    source = DcgmSource(stack["prom"].url, selector='job="dcgm-nocounter"', step_s=0.25)
    data = source.read(stack["start"], stack["end"])
    (t4,) = data.series
    assert t4.integrated
    assert any(
        "no DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION; energy integrates DCGM_FI_DEV_POWER_USAGE" in i
        for i in t4.issues
    )
    assert slope_w(t4) == pytest.approx(T4_WATTS, rel=1e-6)
    assert t4.t_ns[-1] - t4.t_ns[0] >= 4.5e9


def test_ambiguous_series_need_a_selector(stack):
    with pytest.raises(
        InputError, match=r"several DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION series for GPU 0 .*selector"
    ):
        DcgmSource(stack["prom"].url).read(stack["start"], stack["end"])
    with pytest.raises(InputError, match="expected PromQL label matchers"):
        PrometheusSource(stack["prom"].url, selector="job=sidecar")


def test_a_stale_series_is_reported(stack):
    later = stack["end"] + 30 * 10**9  # a window that extends past the data
    data = PrometheusSource(stack["prom"].url, selector='job="sidecar"').read(stack["start"], later)
    assert any("stale: the last reading is" in issue for issue in data.series[0].issues)
