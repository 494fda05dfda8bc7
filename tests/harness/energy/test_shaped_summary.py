"""The summary of shaped arms: the policy, its holds, latency as users see it (from arrival) beside the
server's (from sending), goodput under an SLO, and lateness and rate of the arrivals, not the releases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from energy_synth import MS, S, additive_power, frame, power, series_from_energy, streamed

from harness.energy import AnalysisOptions, ArmWindow, analyze

ARMS = [ArmWindow("s+passthrough", 10 * S, 22 * S), ArmWindow("s+window-1s", 22 * S, 34 * S)]
POLICIES = {
    "s+passthrough": {"spec": "passthrough", "name": "passthrough"},
    "s+window-1s": {"spec": "window:period=1.0", "name": "window-1s"},
}
TTFT_MS, E2E_MS = 50, 400


def _shaped_frame() -> tuple[pd.DataFrame, list]:
    """40 users per arm arriving 250 ms apart, 1 ms late; the window arm sends each at the next whole
    second after its arrival (its hold), the passthrough arm at once."""
    reqs, arrived = [], []
    for k, (name, start) in enumerate((("s+passthrough", 10 * S), ("s+window-1s", 22 * S))):
        for i in range(40):
            planned = start + i * 250 * MS
            arrival = planned + MS
            sent = arrival if k == 0 else start + (i // 4 + 1) * S
            reqs.append(
                streamed(40 * k + i, sent, sent + E2E_MS * MS, TTFT_MS * MS, 5, arm=name, planned=planned)
            )
            arrived.append(arrival)
    df = frame(reqs)
    df["arrived_ns"] = pd.array(arrived, dtype="Int64")
    df["lateness_ns"] = df["arrived_ns"] - df["planned_ns"]  # as the request record computes it
    return df, reqs


def _analyze(df: pd.DataFrame, reqs: list, **options):
    data = power(series_from_energy(additive_power(reqs, 100.0, 60.0), 0, 40 * S, 10 * MS))
    return analyze(df, data, arms=ARMS, options=AnalysisOptions(**options), policies=POLICIES)


def test_holds_and_the_latency_users_see() -> None:
    df, reqs = _shaped_frame()
    summary = _analyze(df, reqs).summary
    direct, window = summary["arms"]
    assert direct["policy"] == POLICIES["s+passthrough"] and window["policy"] == POLICIES["s+window-1s"]
    assert summary["run"]["policy"] is None
    holds_ms = (df["sent_ns"] - df["arrived_ns"]).to_numpy(dtype=float)[40:] / MS
    assert direct["hold_ms"]["max"] == 0 and direct["hold_ms"]["n"] == 40
    assert window["hold_ms"]["p50"] == pytest.approx(np.percentile(holds_ms, 50))
    assert window["hold_ms"]["max"] == pytest.approx(holds_ms.max()) == pytest.approx(999.0)
    for block in (direct, window):  # the server's latency is the same in both arms
        assert block["latency_s"]["ttft"]["p99"] == pytest.approx(TTFT_MS / 1e3)
        assert block["latency_s"]["e2e"]["p50"] == pytest.approx(E2E_MS / 1e3)
    assert direct["latency_s"]["user_e2e"]["p50"] == pytest.approx(E2E_MS / 1e3)
    user_e2e = (E2E_MS + holds_ms) / 1e3
    assert window["latency_s"]["user_e2e"]["p99"] == pytest.approx(np.percentile(user_e2e, 99))
    assert window["latency_s"]["user_ttft"]["mean"] == pytest.approx((TTFT_MS + holds_ms.mean()) / 1e3)


def test_lateness_and_rate_are_of_the_arrivals_not_the_releases() -> None:
    df, reqs = _shaped_frame()
    summary = _analyze(df, reqs).summary
    window = summary["arms"][1]
    assert window["lateness_ms"]["max"] == pytest.approx(1.0)  # the runner's 1 ms, not the hold
    assert "lateness_over_bound" not in window["flags"]
    assert window["rate"]["realized"] == pytest.approx(4.0) == pytest.approx(window["rate"]["planned"])


def test_goodput_counts_the_successes_within_the_slo_as_users_see_it() -> None:
    df, reqs = _shaped_frame()
    df.loc[df.index[-1], "status"] = "http_error"  # a failure is never within the SLO
    assert _analyze(df, reqs).summary["arms"][0]["goodput"] is None  # no SLO: no goodput
    summary = _analyze(df, reqs, slo_e2e_s=1.0).summary
    direct, window = summary["arms"]
    assert summary["options"]["slo_e2e_s"] == 1.0 and summary["options"]["slo_ttft_s"] is None
    assert direct["goodput"]["met"] == 40 and direct["goodput"]["share"] == 1.0
    user_e2e_ms = (df["done_ns"] - df["arrived_ns"]).to_numpy(dtype=float)[40:] / MS
    met = int((user_e2e_ms[:-1] <= 1_000).sum())  # the failed last one excluded
    assert window["goodput"]["met"] == met and 0 < met < 39
    assert window["goodput"]["share"] == pytest.approx(met / 40)
    assert window["goodput"]["rate"] == pytest.approx(met / window["window"]["duration_s"])
    both = _analyze(df, reqs, slo_e2e_s=1.0, slo_ttft_s=0.3).summary["arms"][1]["goodput"]
    ttft_ms = user_e2e_ms - E2E_MS + TTFT_MS
    assert both["met"] == int(((user_e2e_ms <= 1_000) & (ttft_ms <= 300))[:-1].sum()) < met
    assert summary["run"]["goodput"]["met"] == 40 + met


def test_a_log_from_before_shaping_reads_as_unshaped() -> None:
    df, reqs = _shaped_frame()
    old = df.drop(columns=["arrived_ns"]).iloc[:40]  # the passthrough arm, without the column
    data = power(series_from_energy(additive_power(reqs[:40], 100.0, 60.0), 0, 40 * S, 10 * MS))
    block = analyze(old, data, arms=ARMS[:1]).summary["arms"][0]
    assert block["policy"] is None and block["hold_ms"]["max"] == 0
    assert block["latency_s"]["user_e2e"] == block["latency_s"]["e2e"]
