"""Per-GPU figures (harness/energy/gpu_breakdown.py): each attributed GPU's energy and where it went,
a GPU left in that serves nothing, and the host's other GPUs and failed reads."""

from __future__ import annotations

import numpy as np
import pytest

from harness.energy.flags import FlagList
from harness.energy.gpu_breakdown import flag_idle_gpus, gpu_energy, host_gpus
from harness.energy.grid import Intervals
from harness.energy.idle_estimate import IdleEstimate
from harness.energy.split import GpuResult
from harness.power.series import EnergySeries, PowerData

S = 1_000_000_000


def _gpu(name: str, watts: list[float], unattributed: list[float]) -> tuple[Intervals, GpuResult]:
    tau = np.arange(len(watts) + 1, dtype=np.int64) * S
    energy = np.array(watts, dtype=float)  # 1 s intervals: J = W
    iv = Intervals(name, tau, energy, np.zeros(len(watts), bool), 1.0, 0, 0, 0.0)
    return iv, GpuResult(name, energy, np.array(unattributed, dtype=float), 0.0)


def test_each_gpu_splits_into_attributed_and_unattributed_and_the_gpus_share_the_total() -> None:
    (iv0, g0), (iv1, g1) = _gpu("0", [300, 310, 120], [0, 0, 120]), _gpu("1", [280, 290, 120], [0, 0, 120])
    per = gpu_energy([iv0, iv1], [g0, g1])
    assert per["0"] == {
        "energy_j": 730.0, "attributed_j": 610.0, "unattributed_j": 120.0, "mean_power_w": 730.0 / 3,
        "share": 730.0 / 1420.0,
    }  # fmt: skip
    assert per["1"]["attributed_j"] + per["1"]["unattributed_j"] == per["1"]["energy_j"] == 690.0
    assert per["0"]["share"] + per["1"]["share"] == pytest.approx(1.0)


def test_a_gpu_at_idle_while_another_works_is_flagged() -> None:
    per = gpu_energy(*zip(_gpu("0", [300] * 3, [0] * 3), _gpu("5", [120.5] * 3, [0] * 3), strict=True))
    flags = FlagList()
    flag_idle_gpus(per, IdleEstimate(mode="mean", used_w={"0": 120.0, "5": 120.0}), flags)
    assert [(f.code, f.severity, f.scope) for f in flags] == [("gpu_idle_attributed", "warning", "gpu 5")]
    # All at idle (a quiet run): nothing worked, nothing to tell apart.
    quiet = gpu_energy(*zip(_gpu("0", [121] * 3, [0] * 3), _gpu("1", [120] * 3, [0] * 3), strict=True))
    flags = FlagList()
    flag_idle_gpus(quiet, IdleEstimate(mode="mean", used_w={"0": 120.0, "1": 120.0}), flags)
    assert not flags


def _series(gpu: str, watts: float, failed: int) -> EnergySeries:
    t = np.arange(0, 11, dtype=np.int64) * S
    return EnergySeries(gpu, t, watts * np.arange(0, 11, dtype=float), failed_reads=failed)


def test_host_gpus_report_the_unselected_apart_and_flag_failed_reads_of_attributed_ones() -> None:
    host = PowerData(
        [_series("0", 300, 0), _series("1", 280, 4), _series("2", 120, 0), _series("3", 120, 2)], "s"
    )
    attributed = [{"gpu": "0"}, {"gpu": "1"}]
    flags = FlagList()
    out = host_gpus(host, ["0", "1"], attributed, (2 * S, 6 * S), None, flags)  # type: ignore[arg-type]
    assert out["known"] and out["selected"] == ["0", "1"] and out["failed_reads"] == {"0": 0, "1": 4}
    rows = [(o["gpu"], o["energy_j"], o["mean_power_w"], o["failed_reads"]) for o in out["unattributed"]]
    assert rows == [
        ("2", pytest.approx(480.0), pytest.approx(120.0), 0),
        ("3", pytest.approx(480.0), 120.0, 2),
    ]
    by_code = {f.code: f for f in flags}
    assert by_code["gpu_read_failed"].severity == "error" and by_code["gpu_read_failed"].scope == "gpu 1"
    assert by_code["host_gpus_unattributed"].severity == "info"  # GPU 3's failures touch no figure
    assert "GPU 2, 3" in by_code["host_gpus_unattributed"].message
    assert len(flags) == 2


def test_without_raw_samples_the_host_is_unknown_and_nothing_is_flagged() -> None:
    flags = FlagList()
    out = host_gpus(None, None, [], None, "no power_samples.jsonl", flags)
    assert not out["known"] and out["note"] == "no power_samples.jsonl" and not flags


def test_failed_reads_bridged_by_the_counter_are_a_warning_and_a_gap_in_coverage_an_error() -> None:
    # Both GPUs had reads fail; GPU 0's counter readings around them cover the whole run window (its
    # energy is a cumulative counter's delta: nothing missing), GPU 1's stop at 60% of it (lost).
    host = PowerData([_series("0", 300, 3), _series("1", 280, 4)], "s")
    attributed = [{"gpu": "0", "integrated": False}, {"gpu": "1", "integrated": False}]
    flags = FlagList()
    host_gpus(host, ["0", "1"], attributed, (2 * S, 6 * S), None, flags, {"0": 1.0, "1": 0.6})  # type: ignore[arg-type]
    got = {f.scope: f.severity for f in flags if f.code == "gpu_read_failed"}
    assert got == {"gpu 0": "warning", "gpu 1": "error"}
    assert "no energy is missing" in flags[0].message
    # Without a counter its energy integrates power, and what it missed is guessed: still an error.
    flags = FlagList()
    host_gpus(host, ["0"], [{"gpu": "0", "integrated": True}], (2 * S, 6 * S), None, flags, {"0": 1.0})  # type: ignore[arg-type]
    assert [(f.code, f.severity) for f in flags if f.scope == "gpu 0"] == [("gpu_read_failed", "error")]
