"""The `steps` split: engine steps from chunk times, the work fit, hand-computed shares, conservation."""

from __future__ import annotations

import numpy as np
import pytest
from energy_synth import MS, Req, S, frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_conservation import requests, series, windows

from harness.energy import ArmWindow, IdleWindows, Window, analyze
from harness.energy.lifetimes import PointMasses
from harness.energy.steps import pooling_windows, reconstruct
from harness.energy.token_fit import MIN_INTERVALS, fit
from harness.energy.work_weights import PRIOR
from harness.power.series import EnergySeries, PowerData

RTOL = 1e-6


def masses(*chunks: list[int]) -> PointMasses:
    lengths = [len(c) for c in chunks]
    flat = np.array([t for c in chunks for t in c], dtype=np.int64)
    return PointMasses(flat, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), np.ones(len(chunks)))


def test_chunks_within_the_tolerance_are_one_step_and_a_request_is_in_a_step_once():
    # A steps every 10 ms; B's chunks 0.1-0.2 ms after A's; C joins the third step.
    a = [0, 10 * MS, 20 * MS]
    b = [10 * MS + 100_000, 20 * MS + 200_000]
    c = [20 * MS + 50_000]
    steps = reconstruct(masses(a, b, c))
    assert steps.tolerance_ns == 5 * MS  # half the median within-request gap of 10 ms (at most 5 ms)
    assert steps.step.tolist() == [0, 1, 2, 1, 2, 2]
    assert steps.size.tolist() == [1, 2, 3]
    assert steps.time.tolist() == [0, 10 * MS, 20 * MS]
    assert steps.first.tolist() == [True, False, False, True, False, True]


def test_interleaved_steps_a_busy_client_chained_are_split_by_rank():
    # Two requests whose chunks of consecutive steps all arrive within the tolerance of each other:
    # the gap rule alone makes one group; each request's k-th chunk is in the group's k-th step.
    a = [0, 300_000, 600_000]
    b = [100_000, 400_000, 700_000]
    steps = reconstruct(masses(a, b), tolerance_ns=200_000)
    assert steps.step.tolist() == [0, 1, 2, 0, 1, 2]
    assert steps.size.tolist() == [2, 2, 2]


def test_pools_are_busy_runs_cut_at_arms_and_length_absorbing_nearby_idle():
    tau = np.arange(0, 11) * 100 * MS  # ten 100 ms intervals
    busy = np.array([0, 1, 1, 1, 0, 0, 0, 1, 1, 1], dtype=float)
    cuts = np.array([800 * MS])
    assert pooling_windows(tau, busy, cuts, max_s=10.0).tolist() == [0, 1, 1, 1, 2, 3, 4, 5, 6, 6]
    assert pooling_windows(tau, busy, cuts, max_s=0.2).tolist() == [0, 1, 1, 2, 3, 4, 5, 6, 7, 7]
    # Idle intervals within 0.1 s join the nearest busy pool of their arm (interval 5 is 0.1 s from both
    # pools: the earlier one); interval 0 has no busy pool before it in its arm.
    absorbed = pooling_windows(tau, busy, cuts, max_s=10.0, absorb_s=0.1)
    assert absorbed.tolist() == [1, 1, 1, 1, 1, 1, 5, 5, 6, 6]


def test_fit_recovers_known_weights_and_refuses_collinear_work():
    rng = np.random.default_rng(3)
    n = 200
    steps = rng.integers(50, 400, n).astype(float)
    decoded = steps * rng.uniform(1, 8, n)  # batches of 1-8 requests
    prompt = rng.uniform(0, 4000, n)
    truth = np.array([0.33, 4.4e-3, 2.5e-3])
    design = np.column_stack([steps, decoded, prompt])
    energy = design @ truth * (1 + rng.normal(0, 0.002, n))
    result = fit(design, energy)
    assert result.usable and result.reason is None
    np.testing.assert_allclose(result.coef, truth, rtol=0.05)
    assert result.r2 > 0.99 and result.n_intervals == n
    # Every step holds one request: steps and decoded tokens are the same column.
    collinear = np.column_stack([steps, steps, prompt])
    bad = fit(collinear, collinear @ truth)
    assert not bad.usable and "ill-conditioned" in (bad.reason or "")
    few = fit(design[: MIN_INTERVALS - 1], energy[: MIN_INTERVALS - 1])
    assert not few.usable and "fewer than" in (few.reason or "")


def test_steps_split_by_hand():
    """A decodes alone for two steps, then B joins; 50 W above idle while they run. With the prior
    weights (a per step, b per decoded token, c per prompt token) each chunk weighs a/n + b per decoded
    token, a first chunk a/n + c per prompt token; the dynamic energy goes in those proportions."""
    a_w, b_w, c_w = PRIOR
    t0 = 10 * S
    step = 10 * MS
    chunks_a = [t0 + (i + 1) * step for i in range(4)]
    chunks_b = [t0 + 3 * step + 100_000, t0 + 4 * step + 100_000]
    reqs = [
        Req(0, t0, t0 + 45 * MS, first=chunks_a[0], chunks=chunks_a, prompt_tokens=100, output_tokens=4),
        Req(1, t0 + 15 * MS, t0 + 45 * MS, first=chunks_b[0], chunks=chunks_b, prompt_tokens=300,
            output_tokens=2),
    ]  # fmt: skip
    t = np.arange(0, 30 * S + 1, 5 * MS)
    busy = (t > t0) & (t <= t0 + 45 * MS)
    power = PowerData(
        [EnergySeries("0", t, np.cumsum(np.where(busy, 150.0, 100.0) * 0.005))], source="synthetic"
    )
    arms = [ArmWindow("a", 5 * S, 20 * S)]
    idle = IdleWindows(pre=Window(0, 4 * S), post=Window(21 * S, 30 * S))
    result = analyze(frame(reqs), power, arms=arms, idle=idle, method="steps")
    work_a = (a_w + c_w * 100) + (a_w + b_w) + 2 * (a_w / 2 + b_w)
    work_b = (a_w / 2 + c_w * 300) + (a_w / 2 + b_w)
    dynamic = 50.0 * 0.045
    expected = dynamic * np.array([work_a, work_b]) / (work_a + work_b)
    np.testing.assert_allclose(result.requests["dynamic_j"].to_numpy(), expected, rtol=1e-9)
    np.testing.assert_allclose(result.requests["prefill_j"].to_numpy()[1] / result.requests["energy_j"][1],
                               c_w * 300 / work_b, rtol=1e-9)  # fmt: skip
    fit_doc = result.summary["token_fit"]
    assert fit_doc is not None and fit_doc["weights"] == "prior" and not fit_doc["usable"]
    assert "token_fit_unusable" in {f.code for f in result.flags}
    time_split = analyze(frame(reqs), power, arms=arms, idle=idle, method="time").requests["dynamic_j"]
    assert not np.allclose(time_split.to_numpy(), expected, rtol=1e-3)  # the methods really differ


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=requests(), gpu0=series("0"), gpu1=st.one_of(st.none(), series("1")), wins=windows())
def test_steps_energy_adds_up_exactly(reqs, gpu0, gpu1, wins):
    arms, idle = wins
    power = PowerData([gpu0] + ([gpu1] if gpu1 is not None else []), source="random")
    a = analyze(frame(reqs), power, arms=arms, idle=idle, method="steps")
    cons = a.summary["conservation"]
    if cons["total_j"] is not None:
        total = cons["total_j"]
        assert abs(cons["attributed_j"] + cons["unattributed_j"] - total) <= RTOL * max(total, 1.0)
        assert cons["unattributed_j"] >= -RTOL * max(total, 1.0)
        for block in [a.summary["run"], *a.summary["arms"]]:
            if block["energy_j_total"] is not None:
                t = block["energy_j_total"]
                residual = block["energy_j_attributed"] + block["energy_j_unattributed"] - t
                assert abs(residual) <= RTOL * max(t, 1.0)
    energies = a.requests[["energy_j", "prefill_j", "decode_j", "idle_j", "dynamic_j"]].to_numpy(dtype=float)
    assert np.all(np.nan_to_num(energies, nan=0.0) >= -RTOL * max(cons["total_j"] or 0.0, 1.0))
    assert not [f for f in a.flags if f.code == "conservation"]


def test_steps_conservation_with_many_overlapping_requests():
    rng = np.random.default_rng(7)
    n = 2000
    sent = np.sort(rng.integers(S, 20 * S, n))
    done = sent + rng.integers(MS, 3 * S, n)
    reqs = []
    for i in range(n):
        chunks = np.sort(rng.integers(sent[i], done[i] + 1, int(rng.integers(0, 30)))).tolist()
        reqs.append(Req(i, int(sent[i]), int(done[i]), first=chunks[0] if chunks else None, chunks=chunks))
    t = np.arange(0, 25 * S, 7 * MS)
    power = PowerData([EnergySeries("0", t, np.cumsum(rng.uniform(0.5, 5.0, len(t))))], source="random")
    a = analyze(frame(reqs), power, arms=[ArmWindow("a", S // 2, 24 * S)], method="steps")
    cons = a.summary["conservation"]
    assert abs(cons["residual_j"]) <= 1e-11 * cons["total_j"]
    assert a.summary["token_fit"] is not None
