"""The default profile against the H100 measurements it was fitted to, and batching economics.

Replays the calibration's protocol on the simulator's virtual clock: waves of B simultaneous requests
(~200 prompt tokens, 128 output tokens, ignore_eos). Up to B = 64 the mock's energy per request and
decode step are within 15% of the measurements; beyond, the shape holds (TTFT keeps growing, energy
per request stops falling).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.mock.calibrate import load_calibration
from harness.mock.engine import RequestSpec, Simulator
from harness.mock.gpu import integrate_trace
from harness.mock.profile import DEFAULT_PROFILE, load_profile, parse_profile
from harness.mock.replay import replay_wave

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
CALIBRATION = DATA / "calibration" / "h100-vllm0.26-llama3.2-1b.json"

needs_calibration = pytest.mark.skipif(
    not CALIBRATION.is_file(), reason=f"calibration data not found at {CALIBRATION} (../shared/data)"
)


@pytest.fixture(scope="module")
def replayed():
    cal, _, _ = load_calibration(CALIBRATION)
    profile = load_profile(DEFAULT_PROFILE)
    return [
        (row, replay_wave(profile, row.batch, cal.prompt_tokens, cal.output_tokens)) for row in cal.decode
    ]


@needs_calibration
def test_energy_and_decode_step_within_15_percent_up_to_batch_64(replayed):
    checked = 0
    for row, sim in replayed:
        if row.batch > 64:
            continue
        checked += 1
        assert sim.j_per_request == pytest.approx(row.j_per_request, rel=0.15), (
            f"J/request at batch {row.batch}"
        )
        assert sim.decode_step_s == pytest.approx(row.decode_step_s, rel=0.15), (
            f"decode step at batch {row.batch}"
        )
    assert checked >= 5


@needs_calibration
def test_same_shape_beyond_batch_32(replayed):
    by_batch = {row.batch: (row, sim) for row, sim in replayed}
    ttft = [sim.ttft_s_median for b, (_, sim) in sorted(by_batch.items()) if b >= 16]
    assert ttft == sorted(ttft) and ttft[-1] > 10 * ttft[0], "TTFT grows with the burst"
    # energy per request falls steeply up to ~32 (as measured) ...
    j = {b: sim.j_per_request for b, (_, sim) in by_batch.items()}
    assert j[1] / j[32] > 10
    # ... and then stops falling: no larger burst is much cheaper, the largest costs more.
    beyond = [j[b] for b in by_batch if b > 32]
    assert min(beyond) > 0.85 * j[32]
    assert j[max(by_batch)] > j[32]


def _derived_batching_bound(profile, prompt: int, output: int, batch: int) -> float:
    """A lower bound on J/request(one at a time) / J/request(all at once), from the profile alone.

    One at a time, each request runs at least `output - 1` decode steps of batch 1 at busy power.
    All at once, the burst ends at the latest after the frontend admitted everyone (each admission at
    most admit + per_request * batch), every prefill token, and `output` steps of at most `batch`
    sequences; over that time the GPU draws at most busy power, plus the per-token joules.
    """
    st, pw, fe = profile.step_time, profile.power, profile.frontend
    sequential = (output - 1) * pw.busy_w * (st.base_s + st.per_decode_seq_s)
    duration = (
        fe.latency_s
        + batch * (fe.admit_cpu_s + fe.admit_cpu_s_per_request * batch)
        + batch * prompt * st.per_prefill_token_s
        + output * (st.base_s + batch * st.per_decode_seq_s)
    )
    burst = pw.busy_w * duration + batch * (output * pw.per_decode_token_j + prompt * pw.per_prefill_token_j)
    return sequential / (burst / batch)


@pytest.mark.parametrize("profile_name", [DEFAULT_PROFILE, "synthetic-fast"])
def test_batching_economics_emerge_from_the_simulation(profile_name):
    profile = load_profile(profile_name)
    prompt, output, batch = 200, 128, 64
    spec = RequestSpec(prompt, output, ignore_eos=True)

    together = Simulator(profile, trace_power=True)
    for _ in range(batch):
        together.submit(spec, at=0.0)
    together.run_until_idle()
    burst_j = together.read_gpu().energy_j

    alone = Simulator(profile, trace_power=True)
    t = 0.0
    for _ in range(batch):
        req = alone.submit(spec, at=t)
        alone.run_until_idle()
        t = req.finished  # the next one is sent when this one is done
    sequential_j = alone.read_gpu().energy_j

    ratio = (sequential_j / batch) / (burst_j / batch)
    bound = _derived_batching_bound(profile, prompt, output, batch)
    assert bound > 5, "the profile itself implies a large factor"
    assert ratio >= bound
    # and both counters are the integral of their power functions
    for sim in (together, alone):
        reading = sim.read_gpu()
        assert reading.energy_j == pytest.approx(integrate_trace(sim.power_trace, reading.t), rel=1e-12)


@pytest.mark.slow
@needs_calibration
def test_fitter_rebuilds_a_profile_that_meets_the_same_tolerance(tmp_path):
    out = tmp_path / "refit.json"
    config = DATA / "models" / "Llama-3.2-1B-Instruct" / "config.json"
    cmd = [
        sys.executable,
        "-m",
        "harness.mock.calibrate",
        str(CALIBRATION),
        "-o",
        str(out),
        "--name",
        "refit",
    ]
    cmd += ["--model-config", str(config)] if config.is_file() else ["--kv-cache-tokens", "2000000"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    profile = parse_profile(out.read_text(), origin=str(out))
    source = profile.source
    assert source["calibration"]["sha256"] and source["calibration"]["file"] == CALIBRATION.name
    assert profile.output_length.kind == "max_tokens"  # no trace given: every request runs to max_tokens
    for entry in source["fit"]["decode"]:
        if entry["batch"] <= 64:
            sim, measured = entry["simulated"], entry["measured"]
            assert sim["j_per_request"] == pytest.approx(measured["j_per_request"], rel=0.15)
            assert sim["decode_step_s"] == pytest.approx(measured["decode_step_s"], rel=0.15)


def test_fitter_rejects_bad_input_with_one_line(tmp_path):
    bad = tmp_path / "cal.json"
    bad.write_text(json.dumps({"gpu": "x", "decode": [{"batch": 1}]}))
    result = subprocess.run(
        [sys.executable, "-m", "harness.mock.calibrate", str(bad), "-o", str(tmp_path / "p.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("calibrate: error: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "p.json").exists()
