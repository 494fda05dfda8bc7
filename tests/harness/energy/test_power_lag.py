"""The power series' lag behind the requests: estimated, applied before the split, recorded and flagged;
and the all-in figure split into its idle floor and the energy above it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from energy_synth import MS, Req, S, additive_power, frame, power

from foundation.errors import InputError
from harness.energy import AnalysisOptions, ArmWindow, IdleWindows, Window, analyze
from harness.energy.grid import energy_at
from harness.energy.power_lag import SEARCH_S, estimate, parse_power_lag, shift
from harness.power.series import EnergySeries
from harness.runfolder.power_file import load_power
from harness.runfolder.requests_file import read_requests

IDLE_W, PER_REQUEST_W = 100.0, 200.0
H100_RUN = Path(__file__).parents[3] / "docs/results/arrival-shaping-h100/raw/20261122T041328-345a8a03"


def _schedule(n: int, seed: int = 1, spread_ms: int = 0, period_ms: int = 500) -> list[Req]:
    """Arrivals every `period_ms` (± `spread_ms`) from 11 s, each request in flight for 40% to 50% of
    the period: an idle gap after each."""
    rng = np.random.default_rng(seed)
    sent = 11 * S + np.arange(n) * period_ms * MS + rng.integers(-spread_ms, spread_ms + 1, n) * MS
    done = sent + rng.integers(period_ms * 3 // 10, period_ms // 2, n) * MS
    return [Req(i, int(s), int(d)) for i, (s, d) in enumerate(zip(sent, done, strict=True))]


def _lagged(reqs: list[Req], lag_s, t1: int, seed: int = 2) -> EnergySeries:
    """Instant power of a GPU drawing PER_REQUEST_W per request in flight `lag_s(t)` seconds earlier,
    sampled at a random point of every 100 ms, and its energy: the exact integral where the lag is
    one constant, else the samples' (a lag that jumps would make the exact one run backwards)."""
    rng = np.random.default_rng(seed)
    grid = np.arange(0, t1, 100 * MS)
    t = grid + rng.integers(0, 100 * MS, len(grid))
    lag_ns = np.round(np.asarray(lag_s(t), dtype=float) * S).astype(np.int64)
    starts, ends = np.sort([r.sent for r in reqs]), np.sort([r.done for r in reqs])
    n = np.searchsorted(starts, t - lag_ns, side="right") - np.searchsorted(ends, t - lag_ns, side="right")
    watts = IDLE_W + PER_REQUEST_W * n
    if np.all(lag_ns == lag_ns[0]):
        energy = additive_power(reqs, IDLE_W, PER_REQUEST_W)(t - lag_ns)
    else:
        energy = np.concatenate([[0.0], np.cumsum(watts[:-1] * np.diff(t) / S)])
    return EnergySeries("0", t, energy, power_w=watts, source="synthetic")


def _window(reqs: list[Req]) -> list[ArmWindow]:
    return [ArmWindow("a", reqs[0].sent - 100 * MS, reqs[-1].done + 400 * MS)]


def _lifetimes(reqs: list[Req]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r.sent for r in reqs]), np.array([r.done for r in reqs])


IDLE = IdleWindows(pre=Window(0, 10 * S))


def test_a_known_lag_is_recovered_within_one_sample_interval() -> None:
    reqs = _schedule(60)
    series = _lagged(reqs, lambda t: np.full(len(t), 0.08), 45 * S)
    lag = estimate(series, *_lifetimes(reqs), [(a.start_ns, a.end_ns) for a in _window(reqs)])
    assert lag["status"] == "stable" and lag["reason"] is None
    assert lag["estimate_s"] == pytest.approx(0.08, abs=0.1)  # one sample interval
    assert lag["estimate_s"] == pytest.approx(0.08, abs=0.02)  # in fact much closer
    assert lag["transitions"] >= 100 and lag["peak_r"] > 0.9


def test_auto_applies_the_estimate_and_gives_requests_their_trailing_energy() -> None:
    reqs = _schedule(60)
    series = _lagged(reqs, lambda t: np.full(len(t), 0.08), 45 * S)
    truth = np.array([PER_REQUEST_W * (r.done - r.sent) / S for r in reqs])  # each request's dynamic J

    def dynamic_error(setting: str) -> tuple[float, dict]:
        a = analyze(frame(reqs), power(series), arms=_window(reqs), idle=IDLE,
                    options=AnalysisOptions(power_lag=setting))  # fmt: skip
        return abs(float(a.requests["dynamic_j"].mean()) - float(truth.mean())), a.summary

    off, off_summary = dynamic_error("off")
    auto, summary = dynamic_error("auto")
    record = summary["power_lag"]
    assert record["setting"] == "auto" and record["method"] == "busy-xcorr"
    gpu = record["gpus"]["0"]
    assert gpu["applied_s"] == gpu["estimate_s"] == pytest.approx(0.08, abs=0.02)
    assert off_summary["power_lag"]["gpus"]["0"]["applied_s"] == 0.0
    assert auto < 0.2 * off  # uncorrected, 80 ms of each request's power lands in the gap after it
    json.dumps(summary, allow_nan=False)


def test_no_activity_changes_no_estimate_and_no_shift() -> None:
    one = [Req(0, 11 * S, 40 * S)]  # busy throughout the arm: no edge between idle and busy
    series = _lagged(one, lambda t: np.full(len(t), 0.08), 45 * S)
    a = analyze(frame(one), power(series), arms=[ArmWindow("a", 11 * S, 40 * S)], idle=IDLE)
    gpu = a.summary["power_lag"]["gpus"]["0"]
    assert gpu["status"] == "no_estimate" and gpu["estimate_s"] is None and gpu["applied_s"] == 0.0
    assert "edge" in gpu["reason"]
    assert not [f for f in a.flags if f.code.startswith("power_lag")]
    no_instant = EnergySeries("0", series.t_ns, series.energy_j)  # a counter only: nothing to correlate
    lag = estimate(no_instant, *_lifetimes(_schedule(60)), [(0, 45 * S)])
    assert lag["status"] == "no_estimate" and "instant power" in lag["reason"]


def _every_300ms() -> list[Req]:
    return [Req(i, 11 * S + i * 300 * MS, 11 * S + i * 300 * MS + 120 * MS) for i in range(100)]


@pytest.mark.parametrize(
    ("lag_s", "why", "reqs"),
    [
        # The delay changed mid-run.
        (lambda t: np.where(t < 26 * S, 0.04, 0.16), "apart", _schedule(60, spread_ms=100)),
        # Beyond what is searched (arrivals not periodic, or a lag a period longer would look the same).
        (lambda t: np.full(len(t), 0.55), "edge of the search range", _schedule(60, spread_ms=100)),
    ],
)
def test_an_unstable_or_out_of_range_estimate_is_an_error_and_not_applied(lag_s, why, reqs) -> None:
    series = _lagged(reqs, lag_s, 45 * S)
    a = analyze(frame(reqs), power(series), arms=_window(reqs), idle=IDLE)
    gpu = a.summary["power_lag"]["gpus"]["0"]
    assert gpu["status"] == "unstable" and why in gpu["reason"] and gpu["applied_s"] == 0.0
    (flag,) = [f for f in a.flags if f.code == "power_lag_unstable"]
    assert flag.severity == "error" and flag.scope == "gpu 0"  # an error: --strict fails on it
    assert "power_lag_unstable" in a.summary["run"]["flags"]
    fixed = analyze(frame(reqs), power(series), arms=_window(reqs), idle=IDLE,
                    options=AnalysisOptions(power_lag="0.05"))  # fmt: skip
    assert fixed.summary["power_lag"]["gpus"]["0"]["applied_s"] == 0.05  # the user's word is applied
    assert "power_lag_unstable" not in {f.code for f in fixed.flags}


def test_a_delay_the_power_source_declares_is_applied_without_a_flag() -> None:
    # The simulated GPU declares no delay (manifest energy.sensor_delay_s 0): an estimate the client's
    # own delays made unstable is kept for the record, and neither applied nor flagged.
    reqs = _schedule(60, spread_ms=100)
    series = _lagged(reqs, lambda t: np.where(t < 26 * S, 0.04, 0.16), 45 * S)
    a = analyze(frame(reqs), power(series), arms=_window(reqs), idle=IDLE,
                options=AnalysisOptions(sensor_delay_s=0.0))  # fmt: skip
    gpu = a.summary["power_lag"]["gpus"]["0"]
    assert gpu["status"] == "declared" and gpu["applied_s"] == 0.0 and "declares" in gpu["reason"]
    assert gpu["halves_s"][0] is not None and gpu["spread_s"] > 0.05  # the estimate, as it was
    assert not [f for f in a.flags if f.code.startswith("power_lag")]
    # A declared delay is applied as given; the user's --power-lag still overrides it.
    late = analyze(frame(reqs), power(series), arms=_window(reqs), idle=IDLE,
                   options=AnalysisOptions(sensor_delay_s=0.02))  # fmt: skip
    assert late.summary["power_lag"]["gpus"]["0"]["applied_s"] == 0.02
    told = analyze(frame(reqs), power(series), arms=_window(reqs), idle=IDLE,
                   options=AnalysisOptions(sensor_delay_s=0.0, power_lag="0.05"))  # fmt: skip
    assert told.summary["power_lag"]["gpus"]["0"]["applied_s"] == 0.05


def test_a_periodic_load_takes_the_shortest_lag_and_says_so() -> None:
    # Alike requests every 300 ms: -225 ms and 375 ms fit as well as 75 ms; a sensor's delay is the short one.
    reqs = _every_300ms()
    series = _lagged(reqs, lambda t: np.full(len(t), 0.075), 45 * S)
    lag = estimate(series, *_lifetimes(reqs), [(a.start_ns, a.end_ns) for a in _window(reqs)])
    assert lag["status"] == "stable" and lag["estimate_s"] == pytest.approx(0.075, abs=0.02)
    assert "periodic" in lag["reason"] and lag["second_peak"][1] >= 0.9 * lag["peak_r"]


def test_the_shift_moves_times_and_keeps_every_joule() -> None:
    reqs = _schedule(60)
    series = _lagged(reqs, lambda t: np.full(len(t), 0.08), 45 * S)
    moved = shift(series, 0.08)
    assert moved.energy_j is series.energy_j and moved.power_w is series.power_w
    assert np.array_equal(moved.t_ns, series.t_ns - 80 * MS)
    arms = _window(reqs)
    a = analyze(frame(reqs), power(series), arms=arms, idle=IDLE, options=AnalysisOptions(power_lag="0.08"))
    cons = a.summary["conservation"]
    assert abs(cons["residual_j"]) <= 1e-9 * cons["total_j"]
    # The run's total is the counter's delta over the run window, 80 ms later on the sensor's clock.
    start, end = arms[0].start_ns, arms[0].end_ns
    e = energy_at(series, np.array([start + 80 * MS, end + 80 * MS]))
    assert cons["total_j"] == pytest.approx(e[1] - e[0], rel=1e-12)


def test_all_in_is_its_idle_floor_plus_the_energy_above_it() -> None:
    reqs = _schedule(60)
    series = _lagged(reqs, lambda t: np.full(len(t), 0.08), 45 * S)
    a = analyze(frame(reqs), power(series), arms=_window(reqs), idle=IDLE)
    for block in [*a.summary["arms"], a.summary["run"]]:
        split, all_in = block["all_in_split"], block["all_in"]["j_per_request"]
        idle, above = split["idle_j_per_request"], split["above_idle_j_per_request"]
        assert idle + above == pytest.approx(all_in, rel=1e-15) and split["idle_share"] == idle / all_in
        # The idle floor is idle power over the window (power never dips below it here).
        assert idle == pytest.approx(
            IDLE_W * block["window"]["duration_s"] / block["requests"]["ok"], rel=1e-9
        )
        assert above > 0
    r = a.requests
    assert np.array_equal(r["idle_j"] + r["dynamic_j"], r["energy_j"])  # per request, the same split


def test_power_lag_option_is_checked() -> None:
    assert parse_power_lag(" Auto ") == "auto" and parse_power_lag("off") == "off"
    assert float(parse_power_lag("0.075")) == 0.075
    for bad in ("soon", str(SEARCH_S[1] + 0.1), "nan"):
        with pytest.raises(InputError, match="--power-lag"):
            parse_power_lag(bad)


def test_the_committed_h100_run_has_a_plausible_stable_lag() -> None:
    requests, _ = read_requests(H100_RUN / "requests.parquet")
    manifest = json.loads((H100_RUN / "manifest.json").read_text())
    done = requests["sent_ns"].notna() & requests["done_ns"].notna()
    lifetimes = (requests.loc[done, "sent_ns"].astype("int64").to_numpy(),
                 requests.loc[done, "done_ns"].astype("int64").to_numpy())  # fmt: skip
    windows = [(a["start_ns"], a["end_ns"]) for a in manifest["arms"]]
    lag = estimate(load_power(H100_RUN).series[0], *lifetimes, windows)
    # NVML's instant power on an H100 trails its requests by tens of milliseconds, not by none or seconds.
    assert lag["status"] == "stable" and 0.02 <= lag["estimate_s"] <= 0.15
    assert lag["spread_s"] < 0.05 and lag["peak_r"] > 0.7 and lag["transitions"] > 100


def test_a_shift_beyond_the_samples_past_the_window_is_capped_and_said() -> None:
    # The power stops 60 ms after the window (a cell read no power past its last response): shifted by
    # the whole 200 ms, the window's last 140 ms would have no power under it and read as incomplete.
    reqs = _schedule(60)
    arms = _window(reqs)
    series = _lagged(reqs, lambda t: np.full(len(t), 0.08), arms[0].end_ns + 60 * MS)
    a = analyze(frame(reqs), power(series), arms=arms, idle=IDLE, options=AnalysisOptions(power_lag="0.2"))
    gpu = a.summary["power_lag"]["gpus"]["0"]
    room_s = (int(series.t_ns[-1]) - arms[0].end_ns) / 1e9  # up to one 100 ms sample period past t1
    assert gpu["capped_from_s"] == 0.2 and gpu["applied_s"] == pytest.approx(room_s) and room_s < 0.2
    codes = {f.code: f.severity for f in a.flags}
    assert codes.get("power_lag_capped") == "warning"
    assert "power_incomplete" not in codes and a.summary["arms"][0]["all_in"]["j_per_request"] is not None


def test_power_leading_the_requests_is_not_a_lag() -> None:
    reqs = _schedule(60)
    series = _lagged(reqs, lambda t: np.full(len(t), -0.15), 45 * S)  # the power clock runs 150 ms late
    lag = estimate(series, *_lifetimes(reqs), [(a.start_ns, a.end_ns) for a in _window(reqs)])
    assert lag["estimate_s"] == pytest.approx(-0.15, abs=0.02)
    assert lag["status"] == "unstable" and "leads" in lag["reason"]


def test_too_few_edges_for_an_estimate_is_said() -> None:
    reqs = _schedule(3)  # six idle/busy edges: fewer than an estimate needs
    series = _lagged(reqs, lambda t: np.full(len(t), 0.08), 45 * S)
    a = analyze(frame(reqs), power(series), arms=_window(reqs), idle=IDLE)
    assert a.summary["power_lag"]["gpus"]["0"]["status"] == "no_estimate"
    assert {f.code: f.severity for f in a.flags}.get("power_lag_unknown") == "info"
