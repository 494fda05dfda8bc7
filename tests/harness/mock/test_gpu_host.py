"""The simulated host's GPUs (harness/mock/gpu_host.py): serving GPUs share the engine's work above idle,
the others idle, a failing GPU reports an error, and one GPU is the engine's GPU unchanged."""

from __future__ import annotations

import pytest

from foundation.errors import InputError
from harness.mock.engine import RequestSpec, Simulator
from harness.mock.gpu_host import LOST_ERROR, GpuFault, HostLayout, host_gpus, host_layout
from harness.mock.profile import load_profile


def _busy_engine() -> tuple[Simulator, float]:
    """An engine that served a few requests, read at a time when it is idle again."""
    sim = Simulator(load_profile(), seed=1)
    for i in range(4):
        sim.submit(RequestSpec(200, 64, ignore_eos=True), at=0.1 * i)
    sim.advance_to(30.0)
    return sim, 30.0


def test_one_gpu_is_the_engines_gpu_unchanged() -> None:
    sim, t = _busy_engine()
    reading = sim.read_gpu()
    (gpu,) = host_gpus(HostLayout(), sim.profile, reading, t)
    assert gpu["energy_j"] == reading.energy_j and gpu["power_w"] == reading.power_w
    assert gpu["index"] == 0 and gpu["uuid"] == "GPU-mock-0000" and gpu["serving"] is True


def test_serving_gpus_share_the_work_above_idle_and_the_others_idle() -> None:
    sim, t = _busy_engine()
    reading, idle_w = sim.read_gpu(), sim.profile.power.idle_w
    gpus = host_gpus(HostLayout(gpus=8, tensor_parallel=2), sim.profile, reading, t)
    assert [g["index"] for g in gpus] == list(range(8))
    assert [g["serving"] for g in gpus] == [True, True] + [False] * 6
    dynamic = reading.energy_j - idle_w * t
    assert dynamic > 0
    # Each serving GPU draws its own idle power; together they do the engine's work above idle, once.
    assert gpus[0]["energy_j"] + gpus[1]["energy_j"] == pytest.approx(2 * idle_w * t + dynamic, rel=1e-12)
    assert gpus[0]["energy_j"] > gpus[1]["energy_j"] > idle_w * t  # rank 0 does a little more
    for g in gpus[2:]:
        assert g["energy_j"] == pytest.approx(idle_w * t) and g["power_w"] == idle_w
        assert g["utilization_gpu"] == 0.0
    # The same reading gives the same split: deterministic.
    assert gpus == host_gpus(HostLayout(gpus=8, tensor_parallel=2), sim.profile, reading, t)


def test_a_failing_gpu_reports_an_error_from_its_time_on_and_only_it() -> None:
    sim, t = _busy_engine()
    layout = HostLayout(gpus=2, tensor_parallel=2, fault=GpuFault(1, t))
    before = host_gpus(layout, sim.profile, sim.read_gpu(), t - 1.0)
    after = host_gpus(layout, sim.profile, sim.read_gpu(), t)
    assert "error" not in before[1] and before[1]["energy_j"] > 0
    assert after[1]["error"] == LOST_ERROR and "energy_j" not in after[1]
    assert "error" not in after[0] and after[0]["energy_j"] > 0


@pytest.mark.parametrize(
    ("gpus", "tp", "fail", "flag"),
    [(2, 3, None, "--tensor-parallel"), (2, 1, "2@1", "--gpu-fail"), (2, 1, "1", "--gpu-fail"),
     (2, 1, "x@1", "--gpu-fail"), (2, 1, "1@-1", "--gpu-fail"), (2, 1, "1@inf", "--gpu-fail")],
)  # fmt: skip
def test_bad_layouts_get_one_line_naming_the_flag(gpus: int, tp: int, fail: str | None, flag: str) -> None:
    with pytest.raises(InputError, match=f"^{flag}: "):
        host_layout(gpus, tp, fail)
