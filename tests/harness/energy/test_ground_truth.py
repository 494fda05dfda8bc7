"""Ground truth: synthetic GPUs whose power comes from known per-request draws; the split must recover it."""

from __future__ import annotations

import numpy as np
import pytest
from energy_synth import MS, S, additive_power, frame, power, series_from_energy, streamed, token_power

from harness.energy import ArmWindow, IdleWindows, Window, analyze

IDLE_W = 100.0


def _random_requests(seed: int, n: int = 40, span_s: float = 30.0) -> list:
    rng = np.random.default_rng(seed)
    reqs = []
    for i in range(n):
        sent = int(10 * S + rng.uniform(0, span_s) * S)
        life = int(rng.uniform(0.5, 4.0) * S)
        ttft = int(rng.uniform(0.02, 0.3) * life)
        n_chunks = int(rng.integers(5, 120))
        output = int(n_chunks * rng.integers(1, 4))  # some streams carry several tokens per chunk
        reqs.append(
            streamed(
                i,
                sent,
                sent + life,
                ttft,
                n_chunks,
                prompt_tokens=int(rng.integers(20, 2000)),
                output_tokens=output,
            )
        )
    return reqs


def _windows(span_s: float = 30.0):
    arms = [ArmWindow("a", 9 * S, int((10 + span_s + 5) * S))]
    idle = IdleWindows(
        pre=Window(0, 8 * S), post=Window(int((10 + span_s + 6) * S), int((10 + span_s + 16) * S))
    )
    return arms, idle


def _idle_truth(reqs: list, idle_w: float) -> np.ndarray:
    """Each request's share of idle power at equal shares: ∫ idle_w / n(t) over its lifetime (1 ms grid)."""
    t = np.arange(min(r.sent for r in reqs), max(r.done for r in reqs), MS)
    s = np.array([r.sent for r in reqs])
    e = np.array([r.done for r in reqs])
    inflight = (t[:, None] >= s) & (t[:, None] < e)
    n = inflight.sum(axis=1)
    share = np.where(n > 0, idle_w / np.maximum(n, 1), 0.0) * (MS / S)
    return (inflight * share[:, None]).sum(axis=0)


@pytest.mark.parametrize("seed", [1, 2])
def test_time_method_recovers_equal_per_request_draws(seed):
    """Each request draws 60 W while in flight on top of 100 W idle: `time` must give each request
    60 W × its lifetime of dynamic energy (within 1%: only the 10 ms sample intervals in which requests
    start or end blur the split) and its equal share of idle power."""
    reqs = _random_requests(seed)
    arms, idle = _windows()
    series = series_from_energy(additive_power(reqs, IDLE_W, 60.0), 0, 60 * S, 10 * MS)
    a = analyze(frame(reqs), power(series), arms=arms, idle=idle, method="time")
    got = a.requests.set_index("request_id")
    life_s = np.array([(r.done - r.sent) / S for r in reqs])
    np.testing.assert_allclose(got["dynamic_j"].to_numpy(), 60.0 * life_s, rtol=0.01)
    np.testing.assert_allclose(got["idle_j"].to_numpy(), _idle_truth(reqs, IDLE_W), rtol=0.01)
    assert a.summary["idle"]["power_w"] == pytest.approx(IDLE_W, rel=1e-6)
    assert not [f for f in a.flags if f.severity == "error"]


@pytest.mark.parametrize("seed", [3, 4])
def test_tokens_method_recovers_per_token_draws(seed):
    """The GPU spends 0.05 J per token (prompt tokens evenly before the first token, output tokens at
    their chunk): `tokens` must give each request 0.05 J × its tokens of dynamic energy, even though
    requests differ widely in tokens, and even with coarse 100 ms samples."""
    reqs = _random_requests(seed)
    arms, idle = _windows()
    series = series_from_energy(token_power(reqs, IDLE_W, 0.05), 0, 60 * S, 100 * MS)
    a = analyze(frame(reqs), power(series), arms=arms, idle=idle, method="tokens")
    got = a.requests.set_index("request_id")
    tokens = np.array([r.prompt_tokens + r.output_tokens for r in reqs])
    np.testing.assert_allclose(got["dynamic_j"].to_numpy(), 0.05 * tokens, rtol=1e-6)


def test_tokens_method_splits_prefill_and_decode():
    """With no idle power, a request's prefill energy is its prompt tokens' and its decode energy its
    output tokens' (0.05 J each), whatever the sampling."""
    reqs = _random_requests(5)
    arms, idle = _windows()
    series = series_from_energy(token_power(reqs, 0.0, 0.05), 0, 60 * S, 50 * MS)
    got = analyze(frame(reqs), power(series), arms=arms, idle=idle, method="tokens").requests
    np.testing.assert_allclose(got["prefill_j"].to_numpy(), [0.05 * r.prompt_tokens for r in reqs], rtol=1e-6)
    np.testing.assert_allclose(got["decode_j"].to_numpy(), [0.05 * r.output_tokens for r in reqs], rtol=1e-6)
    assert got["idle_j"].abs().max() < 1e-9


def test_tokens_beats_time_when_requests_differ_in_work():
    """Requests in flight together but with very different token counts: `tokens` recovers each one's
    energy while `time` (equal shares) cannot — the two methods really differ."""
    reqs = [
        streamed(0, 10 * S, 14 * S, 100 * MS, 400, prompt_tokens=2000, output_tokens=400),
        streamed(1, 10 * S, 14 * S, 100 * MS, 10, prompt_tokens=50, output_tokens=10),
    ]
    arms = [ArmWindow("a", 9 * S, 15 * S)]
    idle = IdleWindows(pre=Window(0, 8 * S), post=Window(16 * S, 26 * S))
    series = series_from_energy(token_power(reqs, IDLE_W, 0.05), 0, 30 * S, 100 * MS)
    truth = np.array([0.05 * 2400, 0.05 * 60])
    by_tokens = analyze(frame(reqs), power(series), arms=arms, idle=idle, method="tokens").requests[
        "dynamic_j"
    ]
    by_time = analyze(frame(reqs), power(series), arms=arms, idle=idle, method="time").requests["dynamic_j"]
    np.testing.assert_allclose(by_tokens.to_numpy(), truth, rtol=1e-6)
    assert by_time.to_numpy() == pytest.approx([truth.sum() / 2] * 2, rel=1e-6)


def test_two_gpus_on_different_sample_grids_add_up():
    """Tensor parallelism: two GPUs, each drawing 30 W per request in flight, sampled on different grids
    (10 ms and 37 ms, offset). Per-request energy is the sum over the GPUs; so is the window total."""
    reqs = _random_requests(6, n=25)
    arms, idle = _windows()
    g0 = series_from_energy(additive_power(reqs, 60.0, 30.0), 0, 60 * S, 10 * MS, gpu="0")
    g1 = series_from_energy(additive_power(reqs, 40.0, 30.0), 3 * MS, 60 * S, 37 * MS, gpu="1")
    a = analyze(frame(reqs), power(g0, g1), arms=arms, idle=idle, method="time")
    life_s = np.array([(r.done - r.sent) / S for r in reqs])
    np.testing.assert_allclose(a.requests["dynamic_j"].to_numpy(), 60.0 * life_s, rtol=0.02)
    np.testing.assert_allclose(a.requests["idle_j"].to_numpy(), _idle_truth(reqs, 100.0), rtol=0.02)
    assert a.summary["idle"]["power_w"] == pytest.approx(100.0, rel=1e-6)
    assert [g["gpu"] for g in a.summary["power"]["gpus"]] == ["0", "1"]
    busy = a.timeline["power_w"].max()
    assert busy > 100.0 + 60.0  # the plotted power is the sum over both GPUs
