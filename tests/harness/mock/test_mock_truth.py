"""The mock's ground truth per request (`truth.py`), on the simulator's virtual clock."""

from __future__ import annotations

import pytest

from harness.mock.engine import RequestSpec, Simulator
from harness.mock.profile import load_profile
from harness.mock.truth import Truth


def test_shares_and_idle_between_steps_add_up_to_the_gpu_counter():
    profile = load_profile("h100-vllm0.26-llama3.2-1b")
    truth = Truth(profile)
    sim = Simulator(profile, listener=truth)
    short = sim.submit(RequestSpec(prompt_tokens=50, max_tokens=64, ignore_eos=True), at=0.0)
    long = sim.submit(RequestSpec(prompt_tokens=3000, max_tokens=64, ignore_eos=True), at=0.0)
    sim.submit(RequestSpec(prompt_tokens=50, max_tokens=64, ignore_eos=True), at=2.0)  # alone, later
    end = sim.run_until_idle()
    doc = truth.document(sim.read_gpu().energy_j, end, step_in_flight=sim.step is not None)
    shares = sum(r["energy_j"] for r in doc["requests"])
    assert shares + doc["idle_between_steps_j"] == pytest.approx(doc["gpu_energy_j"], rel=1e-12)
    assert doc["steps_j"] == pytest.approx(shares, rel=1e-12)
    by_rid = {r["rid"]: r for r in doc["requests"]}
    assert [r["steps"] for r in doc["requests"]] == [64, 64, 64]  # the prefill step and 63 decodes each
    # Side by side, the long prompt pays for its prefill: most of what it pays more.
    extra = by_rid[long.rid]["dynamic_j"] - by_rid[short.rid]["dynamic_j"]
    prefill_gap = by_rid[long.rid]["prefill_dynamic_j"] - by_rid[short.rid]["prefill_dynamic_j"]
    assert extra > 1.0 and 0.9 * extra < prefill_gap
    # Alone, a request pays every step's whole cost: more than each of the two that shared theirs.
    assert by_rid[2]["dynamic_j"] > by_rid[short.rid]["dynamic_j"]
