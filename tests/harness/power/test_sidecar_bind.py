"""`joulebench sidecar` listens on 127.0.0.1 unless --host says otherwise: it has no authentication, so
reaching it from other hosts is a choice made on the command line (docs/power.md says what it exposes).

Real processes: the mock server's simulated GPU behind `joulebench sidecar --backend simulated`.
"""

from __future__ import annotations

import re
import socket

import pytest
from fake_pynvml import FakeGpu, FakeNvml
from joulebench_testkit import free_port, joulebench_server, run_joulebench, run_mock_server

from harness.power.nvml import NvmlBackend
from harness.power.sidecar_server import Sidecar

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    with run_mock_server(log_dir=tmp_path_factory.mktemp("mock")) as server:
        yield server


def outside_address() -> str | None:
    """An IPv4 address of this host that is not loopback (None where it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, the kernel only picks a route
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def listening_on(log_text: str) -> str:
    match = re.search(r"http://([^/\s]+):(\d+)/metrics", log_text)
    assert match, log_text
    return match.group(1)


def start(mock_url: str, port: int, *host_args: str, log_dir=None):
    args = ["sidecar", "--backend", "simulated", "--simulate-from", mock_url, "--port", str(port), *host_args]
    return joulebench_server(args, port, "/healthz", log_dir=log_dir)


def test_default_is_loopback_only(mock, tmp_path):
    port = free_port()
    with start(mock.url, port, log_dir=tmp_path) as car:
        assert listening_on(car.log.read_text()) == "127.0.0.1"
        assert answers("127.0.0.1", port)
        outside = outside_address()
        if outside is not None:
            assert not answers(outside, port), f"the sidecar answered on {outside}"


def test_all_interfaces_only_when_asked(mock, tmp_path):
    outside = outside_address()
    if outside is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    port = free_port()
    with start(mock.url, port, "--host", "0.0.0.0", log_dir=tmp_path) as car:
        assert listening_on(car.log.read_text()) == "0.0.0.0"
        assert answers(outside, port) and answers("127.0.0.1", port)


def test_help_gives_the_default_and_what_binding_elsewhere_exposes():
    result = run_joulebench("sidecar", "--help", timeout=60)
    text = " ".join(result.stdout.replace("│", " ").split())
    assert result.returncode == 0
    assert "[default: 127.0.0.1]" in text
    assert "--host 0.0.0.0" in text and "no authentication" in text and "GPU power, energy" in text


def test_the_server_class_defaults_to_loopback_too():
    car = Sidecar(NvmlBackend(nvml=FakeNvml([FakeGpu("GPU-fake-0")])), port=0)
    try:
        assert car.address[0] == "127.0.0.1"
    finally:
        car.stop()
