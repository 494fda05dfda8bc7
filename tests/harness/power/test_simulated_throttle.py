"""The simulated GPU's throttle reasons: 0, except NVML's software power cap bit while the mock holds a step
at the power limit (it stretches steps that would draw more). Exported like NVML's, so the Grafana
dashboard's throttling panel has a series for the mock stack too."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from joulebench_testkit import run_mock_server

from harness.power.simulated import SW_POWER_CAP, SimulatedBackend, _throttle_reasons

pytestmark = pytest.mark.slow


def test_reasons_from_power_and_limit() -> None:
    assert _throttle_reasons(120.0, 700.0) == 0
    assert _throttle_reasons(150.0, 150.0) == SW_POWER_CAP == 0x4
    assert _throttle_reasons(None, 700.0) == 0 and _throttle_reasons(300.0, None) == 0


def test_idle_is_unthrottled_and_a_capped_gpu_reports_the_power_cap(tmp_path) -> None:
    # A limit of 150 W, under the profile's 261 W busy power: every busy step runs at the cap.
    with run_mock_server("--set", "gpu.power_limit_w=150", log_dir=tmp_path) as mock:
        backend = SimulatedBackend(mock.url)
        try:
            assert backend.read_state(0).throttle_reasons == 0  # idle: 120 W
            stop = threading.Event()

            def load() -> None:
                body = {"model": "mock", "prompt": "hi", "max_tokens": 200, "ignore_eos": True}
                with httpx.Client(timeout=30) as client:
                    while not stop.is_set():
                        client.post(mock.url + "/v1/completions", json=body)

            thread = threading.Thread(target=load)
            thread.start()
            try:
                deadline, seen = time.monotonic() + 10, set()
                while time.monotonic() < deadline and SW_POWER_CAP not in seen:
                    seen.add(backend.read_state(0).throttle_reasons)
                    time.sleep(0.02)
            finally:
                stop.set()
                thread.join()
            assert SW_POWER_CAP in seen
        finally:
            backend.close()
