"""Conservation, exactly, on random inputs: per-request energies + unattributed = measured total."""

from __future__ import annotations

import numpy as np
import pytest
from energy_synth import MS, Req, S, frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.energy import ArmWindow, IdleWindows, Window, analyze
from harness.power.series import EnergySeries, PowerData

# Rounding in the cumulative sums reaches a few 1e-9 of the total on adversarial inputs (a large counter
# offset, the tokens split); the join flags `conservation` above 1e-6. A real leak is far larger.
RTOL = 1e-6

times = st.integers(min_value=0, max_value=20 * S)


@st.composite
def requests(draw):
    reqs = []
    for i in range(draw(st.integers(0, 25))):
        sent = draw(st.one_of(st.none(), times))
        done = None if sent is None else draw(st.one_of(st.none(), st.integers(sent, sent + 5 * S)))
        first = None
        if done is not None and draw(st.booleans()):
            first = draw(st.integers(sent, done))
        base = first if first is not None else (sent or 0)
        # Chunk times may fall outside the lifetime or out of order: the join must cope.
        chunks = draw(st.lists(st.integers(base - S, base + 3 * S), max_size=8))
        reqs.append(
            Req(
                request_id=i,
                sent=sent,
                done=done,
                first=first,
                chunks=chunks,
                prompt_tokens=draw(st.one_of(st.none(), st.integers(0, 3000))),
                output_tokens=draw(st.one_of(st.none(), st.integers(0, 500))),
                arm=draw(st.sampled_from(["a", "b", "c"])),
                status=draw(st.sampled_from(["ok", "ok", "ok", "http_error", "timeout", "cancelled"]))
                if sent is not None
                else "not_sent",
                warmup=draw(st.booleans()) and i < 3,
                stream=draw(st.booleans()),
            )
        )
    return reqs


@st.composite
def series(draw, gpu: str):
    n = draw(st.integers(0, 60))
    t = sorted(set(draw(st.lists(st.integers(-2 * S, 26 * S), min_size=n, max_size=n))))
    steps = draw(st.lists(st.floats(0, 500, allow_nan=False), min_size=len(t), max_size=len(t)))
    energy = np.cumsum(steps) + draw(st.floats(0, 1e6))
    return EnergySeries(gpu, np.array(t, dtype=np.int64), energy)


@st.composite
def windows(draw):
    arms = []
    for name in draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=3)):
        a = draw(times)
        arms.append(ArmWindow(name, a, draw(st.integers(a, a + 10 * S))))
    idle = None
    if draw(st.booleans()):
        pre = Window(-2 * S, -S) if draw(st.booleans()) else None
        post = Window(23 * S, 25 * S) if draw(st.booleans()) else None
        idle = IdleWindows(pre=pre, post=post, mode=draw(st.sampled_from(["mean", "pre", "post", "linear"])))
    return arms, idle


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reqs=requests(),
    gpu0=series("0"),
    gpu1=st.one_of(st.none(), series("1")),
    wins=windows(),
    method=st.sampled_from(["time", "tokens"]),
)
def test_energy_adds_up_exactly(reqs, gpu0, gpu1, wins, method):
    arms, idle = wins
    power = PowerData([gpu0] + ([gpu1] if gpu1 is not None else []), source="random")
    a = analyze(frame(reqs), power, arms=arms, idle=idle, method=method)
    cons = a.summary["conservation"]
    if cons["total_j"] is not None:
        total = cons["total_j"]
        assert abs(cons["attributed_j"] + cons["unattributed_j"] - total) <= RTOL * max(total, 1.0)
        assert cons["unattributed_j"] >= -RTOL * max(total, 1.0)
        for block in [a.summary["run"], *a.summary["arms"]]:
            if block["energy_j_total"] is None:
                continue
            t = block["energy_j_total"]
            assert abs(block["energy_j_attributed"] + block["energy_j_unattributed"] - t) <= RTOL * max(
                t, 1.0
            )
    energies = a.requests[["energy_j", "prefill_j", "decode_j", "idle_j", "dynamic_j"]].to_numpy(dtype=float)
    scale = max(cons["total_j"] or 0.0, 1.0)
    assert np.all(np.nan_to_num(energies, nan=0.0) >= -RTOL * scale)
    cov = a.requests["coverage"].to_numpy(dtype=float)
    assert np.all((np.isnan(cov)) | ((cov >= 0) & (cov <= 1)))
    assert not [f for f in a.flags if f.code == "conservation"]


def test_conservation_with_many_overlapping_requests():
    """A dense case (hundreds in flight, sub-interval lifetimes, both methods) at a tight tolerance."""
    rng = np.random.default_rng(7)
    n = 2000
    sent = np.sort(rng.integers(S, 20 * S, n))
    done = sent + rng.integers(MS, 3 * S, n)
    reqs = []
    for i in range(n):
        k = int(rng.integers(0, 30))
        chunks = np.sort(rng.integers(sent[i], done[i] + 1, k)).tolist()
        reqs.append(Req(i, int(sent[i]), int(done[i]), first=chunks[0] if chunks else None, chunks=chunks))
    t = np.arange(0, 25 * S, 7 * MS)
    energy = np.cumsum(rng.uniform(0.5, 5.0, len(t)))
    power = PowerData([EnergySeries("0", t, energy)], source="random")
    for method in ("time", "tokens"):
        a = analyze(frame(reqs), power, arms=[ArmWindow("a", S // 2, 24 * S)], method=method)
        cons = a.summary["conservation"]
        assert abs(cons["residual_j"]) <= 1e-11 * cons["total_j"]
        assert cons["unattributed_j"] > 0  # the stretches before the first send and after the last
