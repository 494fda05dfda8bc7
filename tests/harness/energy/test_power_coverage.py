"""An arm whose window power samples cover only part of has an incomplete energy total: an error flag on
the arm, no all-in figure, per-request figures only of the requests wholly under power."""

from __future__ import annotations

import json

import numpy as np
import pytest
from energy_synth import MS, S, additive_power, frame, power, series_from_energy, streamed

from harness.energy import AnalysisOptions, ArmWindow, IdleWindows, Window, analyze
from harness.power.series import EnergySeries

# Two arms of 10 requests, each request in flight for 2 s, one a second; arm b from 22 s to 34 s.
ARMS = [ArmWindow("a", 10 * S, 22 * S), ArmWindow("b", 22 * S, 34 * S)]
IDLE = IdleWindows(pre=Window(0, 10 * S))


def _reqs() -> list:
    return [
        streamed(i, start + k * S, start + k * S + 2 * S, 100 * MS, 20, arm=arm)
        for i, (arm, start, k) in enumerate(
            [(arm, start, k) for arm, start in (("a", 10 * S), ("b", 22 * S)) for k in range(10)]
        )
    ]


def _series(reqs, t1: int, gpu: str = "0") -> EnergySeries:
    return series_from_energy(additive_power(reqs, 100.0, 60.0), 0, t1, 10 * MS, gpu=gpu)


def _flags(a) -> dict[tuple[str, str], str]:
    return {(f.code, f.scope): f.severity for f in a.flags}


def test_power_ending_inside_an_arm_makes_that_arm_incomplete():
    reqs = _reqs()
    a = analyze(frame(reqs), power(_series(reqs, 28 * S)), arms=ARMS, idle=IDLE)
    flags = _flags(a)
    assert flags[("power_incomplete", "b")] == "error"
    assert ("power_incomplete", "a") not in flags
    arm_a, arm_b = a.summary["arms"]
    assert arm_a["power_coverage"] == {"min": 1.0, "by_gpu": {"0": 1.0}, "complete": True}
    assert arm_a["all_in"]["j_per_request"] is not None and "power_incomplete" not in arm_a["flags"]
    assert (
        arm_b["power_coverage"]["min"] == pytest.approx(0.5) and arm_b["power_coverage"]["complete"] is False
    )
    assert arm_b["all_in"] == {
        "j_per_request": None,
        "ci95": None,
        "wh_per_request": None,
        "j_per_output_token": None,
    }
    assert "power_incomplete" in arm_b["flags"]
    # Requests 10..14 of arm b end by 28 s: only they are wholly under power, and only they are figures.
    assert arm_b["j_per_request"]["n"] == 5 and arm_b["requests"]["ok"] == 10
    energies = a.requests.set_index("request_id")["energy_j"]
    assert arm_b["j_per_request"]["mean"] == pytest.approx(energies[[10, 11, 12, 13, 14]].mean())
    assert "5 of 10 successful requests" in next(f.message for f in a.flags if f.code == "power_incomplete")
    run = a.summary["run"]
    assert run["power_coverage"]["complete"] is False and run["all_in"]["j_per_request"] is None
    assert a.summary["options"]["min_power_coverage"] == 0.999
    json.dumps(a.summary, allow_nan=False)


def test_whole_power_keeps_every_figure():
    reqs = _reqs()
    a = analyze(frame(reqs), power(_series(reqs, 40 * S)), arms=ARMS, idle=IDLE)
    assert not any(f.code == "power_incomplete" for f in a.flags)
    for block in [*a.summary["arms"], a.summary["run"]]:
        assert block["power_coverage"]["complete"] is True and block["all_in"]["j_per_request"] is not None
        assert block["j_per_request"]["n"] == block["requests"]["ok"]


def test_the_gpu_that_covers_least_decides():
    reqs = _reqs()
    whole, short = _series(reqs, 40 * S, gpu="0"), _series(reqs, 33 * S, gpu="1")
    a = analyze(frame(reqs), power(whole, short), arms=ARMS, idle=IDLE)
    arm_b = a.summary["arms"][1]
    assert arm_b["power_coverage"]["by_gpu"]["0"] == 1.0
    assert arm_b["power_coverage"]["min"] == pytest.approx(11 / 12)
    assert "gpu 1" in next(f.message for f in a.flags if f.code == "power_incomplete")


def test_a_gpu_without_samples_covers_nothing():
    reqs = _reqs()
    empty = EnergySeries("1", np.zeros(0, np.int64), np.zeros(0))
    a = analyze(frame(reqs), power(_series(reqs, 40 * S), empty), arms=ARMS, idle=IDLE)
    for arm in a.summary["arms"]:
        assert arm["power_coverage"]["by_gpu"]["1"] == 0.0 and arm["all_in"]["j_per_request"] is None
        assert arm["j_per_request"]["n"] == 0  # no request is under every GPU's power


def test_the_bound_is_an_option():
    reqs = _reqs()
    options = AnalysisOptions(min_power_coverage=0.4)
    a = analyze(frame(reqs), power(_series(reqs, 28 * S)), arms=ARMS, idle=IDLE, options=options)
    assert not any(f.code == "power_incomplete" for f in a.flags)
    assert a.summary["arms"][1]["all_in"]["j_per_request"] is not None
    assert a.summary["options"]["min_power_coverage"] == 0.4


def test_no_power_at_all_stays_one_error():
    reqs = _reqs()
    a = analyze(frame(reqs), power(), arms=ARMS, idle=IDLE)
    codes = {f.code for f in a.flags if f.severity == "error"}
    assert codes == {"no_power_data"}  # not one power_incomplete per arm on top
    assert a.summary["arms"][0]["power_coverage"] == {"min": None, "by_gpu": {}, "complete": None}
