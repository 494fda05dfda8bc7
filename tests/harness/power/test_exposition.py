"""The sidecar's /metrics: names, types and units per docs/contracts.md, and promtool's verdict."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest
from fake_pynvml import FakeGpu
from joulebench_testkit import require_tool
from prometheus_client.parser import text_string_to_metric_families

# family name (as the parser reports it, counters without _total) → type
EXPECTED = {
    "joulebench_gpu_energy_joules": "counter",
    "joulebench_gpu_energy_read_timestamp_seconds": "gauge",
    "joulebench_gpu_energy_resets": "counter",
    "joulebench_gpu_power_watts": "gauge",
    "joulebench_gpu_power_limit_watts": "gauge",
    "joulebench_gpu_temperature_celsius": "gauge",
    "joulebench_gpu_clock_hertz": "gauge",
    "joulebench_gpu_utilization_ratio": "gauge",
    "joulebench_gpu_throttle_reasons": "gauge",
    "joulebench_gpu_info": "gauge",
    "joulebench_gpu_read_errors": "counter",
    "joulebench_sampler_lag_seconds": "histogram",
    "joulebench_sampler_samples": "counter",
    "joulebench_sampler_missed": "counter",
    "joulebench_sampler_interval_seconds": "gauge",
    "joulebench_sidecar_info": "gauge",
}


def scrape(url: str) -> tuple[str, dict[str, dict[tuple, float]], dict[str, str]]:
    text = httpx.get(url + "/metrics").text
    samples: dict[str, dict[tuple, float]] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return text, samples, types


def one(samples: dict[str, dict[tuple, float]], metric: str, **labels: str) -> float:
    matches = [v for k, v in samples[metric].items() if set(labels.items()) <= set(k)]
    assert len(matches) == 1, (metric, labels, samples.get(metric))
    return matches[0]


def test_names_types_and_units(fake_sidecar):
    _, fake, url = fake_sidecar(
        [FakeGpu("GPU-aaaa", power_w=250.0), FakeGpu("GPU-bbbb", power_w=90.0, counter=False)],
        interval_s=0.05,
    )
    time.sleep(1.3)
    _, samples, types = scrape(url)
    for name, kind in EXPECTED.items():
        assert types.get(name) == kind, name
    assert "joulebench_gpu_energy_joules_total" in samples  # rate()/increase() work on a counter

    energy = one(samples, "joulebench_gpu_energy_joules_total", gpu="0", uuid="GPU-aaaa", method="counter")
    assert 0 < energy <= fake.energy_j(0)  # joules (the fake counts mJ)
    assert one(samples, "joulebench_gpu_energy_joules_total", gpu="1", method="integrated") > 0
    read_at = one(samples, "joulebench_gpu_energy_read_timestamp_seconds", gpu="0")
    assert abs(read_at - time.time()) < 2.0  # Unix seconds
    assert one(samples, "joulebench_gpu_power_watts", gpu="0", kind="instant") == 250.0
    assert one(samples, "joulebench_gpu_power_watts", gpu="0", kind="average") == pytest.approx(250.0)
    assert one(samples, "joulebench_gpu_power_limit_watts", gpu="0") == 700.0
    assert one(samples, "joulebench_gpu_clock_hertz", gpu="0", clock="sm") == 1.98e9
    assert one(samples, "joulebench_gpu_clock_hertz", gpu="0", clock="memory") == 2.619e9
    assert one(samples, "joulebench_gpu_utilization_ratio", gpu="0", unit="gpu") == pytest.approx(0.97)
    assert one(samples, "joulebench_gpu_temperature_celsius", gpu="0") == 52.0
    assert one(samples, "joulebench_gpu_throttle_reasons", gpu="0") == 0
    info = one(samples, "joulebench_gpu_info", gpu="1", uuid="GPU-bbbb", name="NVIDIA H100 80GB HBM3")
    assert info == 1
    assert one(samples, "joulebench_gpu_info", gpu="1", energy_method="integrated", driver="580.95.05") == 1
    assert one(samples, "joulebench_gpu_energy_resets_total", gpu="0") == 0
    taken = one(samples, "joulebench_sampler_samples_total", loop="power")
    assert one(samples, "joulebench_sampler_lag_seconds_count", loop="power") == taken
    assert one(samples, "joulebench_sampler_lag_seconds_bucket", loop="power", le="+Inf") == taken
    assert one(samples, "joulebench_sampler_interval_seconds", loop="power") == 0.05
    assert one(samples, "joulebench_sampler_missed_total", loop="power") >= 0
    assert "process_cpu_seconds_total" in samples  # the sidecar's own cost


def test_promtool_accepts_the_exposition(fake_sidecar):
    promtool = require_tool("promtool", "apt-get install prometheus")
    _, _, url = fake_sidecar([FakeGpu("GPU-0"), FakeGpu("GPU-1", counter=False, instant_field=False)])
    time.sleep(1.2)
    text = httpx.get(url + "/metrics").text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_resets_are_exported(fake_sidecar):
    _, fake, url = fake_sidecar([FakeGpu("GPU-0", power_w=400.0, since_load_j=861_000.0)], interval_s=0.05)
    time.sleep(0.7)
    before = one(scrape(url)[1], "joulebench_gpu_energy_joules_total", gpu="0")
    fake.reload_driver(0)
    time.sleep(1.2)
    samples = scrape(url)[1]
    assert one(samples, "joulebench_gpu_energy_resets_total", gpu="0") == 1
    assert one(samples, "joulebench_gpu_energy_joules_total", gpu="0") > before  # still increasing


def test_stale_power_is_withdrawn_but_the_counter_stays(fake_sidecar):
    _, fake, url = fake_sidecar([FakeGpu("GPU-0"), FakeGpu("GPU-1")], interval_s=0.02)
    time.sleep(0.6)
    fake.gpus[0].fail = {"nvmlDeviceGetFieldValues"}
    time.sleep(1.6)  # > max(1 s, 10 intervals) without a power reading
    samples = scrape(url)[1]
    power = samples["joulebench_gpu_power_watts"]
    assert not [k for k in power if ("gpu", "0") in k]
    assert [k for k in power if ("gpu", "1") in k]
    assert one(samples, "joulebench_gpu_energy_joules_total", gpu="0") > 0
    assert one(samples, "joulebench_gpu_read_errors_total", gpu="0", loop="power", kind="failed") > 20
