"""The simulated GPU's clock-event reasons in `/sim/gpu` (issue 16): NVML's software power cap bit while it
draws its power limit, none below it; GPUs of the host that serve nothing report none."""

from __future__ import annotations

from harness.mock.gpu import SW_POWER_CAP, SimGpu
from harness.mock.gpu_host import HostLayout, host_gpus
from harness.mock.profile import load_profile


def test_power_cap_bit_only_while_at_the_limit() -> None:
    profile = load_profile()
    gpu = SimGpu(profile.gpu, profile.power)
    assert gpu.read(1.0).throttle_reasons == 0  # idle
    limit = profile.gpu.power_limit_w
    gpu.set_power(1.0, limit, busy=True)  # the engine holds a step that would draw more at the limit
    capped = gpu.read(2.0)
    assert capped.throttle_reasons == SW_POWER_CAP == 0x4
    gpu.set_power(2.0, limit * 0.9, busy=True)
    assert gpu.read(3.0).throttle_reasons == 0
    gpu.set_power(3.0, limit, busy=True)
    entries = host_gpus(HostLayout(gpus=3, tensor_parallel=2), profile, gpu.read(4.0), 4.0)
    assert [e["throttle_reasons"] for e in entries] == [SW_POWER_CAP, SW_POWER_CAP, 0]
