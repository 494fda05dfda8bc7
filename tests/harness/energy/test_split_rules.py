"""The split rules on one hand-computed case: a single 10 s sample interval that two requests overlap
partly (the documented rules of docs/energy.md, number by number)."""

from __future__ import annotations

import numpy as np
import pytest
from energy_synth import Req, S, frame

from harness.energy import ArmWindow, IdleWindows, Window, analyze
from harness.power.series import EnergySeries, PowerData

# Idle 100 W before and after; 1500 J over the interval [0, 10 s]: 1000 J idle, 500 J dynamic.
POWER = PowerData(
    [EnergySeries("0", np.array([-10, 0, 10, 20]) * S, np.array([0.0, 1000.0, 2500.0, 3500.0]))], "hand"
)
ARMS = [ArmWindow("a", 0, 10 * S)]
IDLE = IdleWindows(pre=Window(-10 * S, 0), post=Window(10 * S, 20 * S))
REQS = [
    # A: in flight 2-10 s; 100 prompt tokens before its first token at 3 s; output tokens at 3, 6, 8 s.
    Req(0, 2 * S, 10 * S, first=3 * S, chunks=[3 * S + 1, 6 * S, 8 * S], prompt_tokens=100, output_tokens=3),
    # B: in flight 6-10 s; 50 prompt tokens before its first token at 7 s; output tokens at 7 and 9 s.
    Req(1, 6 * S, 10 * S, first=7 * S, chunks=[7 * S + 1, 9 * S], prompt_tokens=50, output_tokens=2),
]


def test_time_shares():
    """Busy time is 8 s (2-10 s): dynamic 500 J at 62.5 W per busy second; 2-6 s A alone, 6-10 s
    halves. Idle power of the busy instants is shared the same way; idle of 0-2 s is unattributed."""
    a = analyze(frame(REQS), POWER, arms=ARMS, idle=IDLE, method="time")
    got = a.requests.set_index("request_id")
    assert got.loc[0, "dynamic_j"] == pytest.approx(62.5 * 4 + 62.5 * 4 / 2)
    assert got.loc[1, "dynamic_j"] == pytest.approx(62.5 * 4 / 2)
    assert got.loc[0, "idle_j"] == pytest.approx(100 * 4 + 100 * 4 / 2)
    assert got.loc[1, "idle_j"] == pytest.approx(100 * 4 / 2)
    assert a.summary["run"]["energy_j_unattributed"] == pytest.approx(200.0)
    # Phases: A's prefill is 2-3 s (alone): 62.5 + 100 J.
    assert got.loc[0, "prefill_j"] == pytest.approx(162.5)
    assert got.loc[0, "energy_j"] + got.loc[1, "energy_j"] + 200.0 == pytest.approx(1500.0)


def test_token_shares():
    """155 tokens in the interval (A: 103, B: 52) share its 500 J dynamic and the 800 J of idle power
    of its busy instants; the idle of 0-2 s stays unattributed."""
    a = analyze(frame(REQS), POWER, arms=ARMS, idle=IDLE, method="tokens")
    got = a.requests.set_index("request_id")
    assert got.loc[0, "dynamic_j"] == pytest.approx(500 * 103 / 155)
    assert got.loc[1, "dynamic_j"] == pytest.approx(500 * 52 / 155)
    assert got.loc[0, "idle_j"] == pytest.approx(800 * 103 / 155)
    assert got.loc[0, "prefill_j"] == pytest.approx(1300 * 100 / 155)
    assert got.loc[0, "decode_j"] == pytest.approx(1300 * 3 / 155)
    assert a.summary["run"]["energy_j_unattributed"] == pytest.approx(200.0)


def test_power_below_idle_counts_as_idle():
    """An interval drawing 50 W against a 100 W idle estimate: all of it is idle, nothing negative."""
    low = PowerData(
        [EnergySeries("0", np.array([-10, 0, 10, 20]) * S, np.array([0, 1000, 1500, 2500.0]))], "x"
    )
    a = analyze(frame(REQS), low, arms=ARMS, idle=IDLE, method="time")
    got = a.requests.set_index("request_id")
    assert (got["dynamic_j"] == 0).all()
    assert got.loc[0, "idle_j"] == pytest.approx(50 * 4 + 50 * 4 / 2)
    assert a.summary["idle"]["clamped_j"] == pytest.approx(500.0)
    assert a.summary["run"]["energy_j_unattributed"] == pytest.approx(100.0)
