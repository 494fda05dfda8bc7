"""Shaping policies on the mock, end to end: `joulebench run --policy ...` against the mock server and a
simulated sidecar (real processes, real HTTP). The mock batches and draws power as an H100 does, so it
must reproduce what shaping is for: holding requests and releasing them together costs fewer joules per
request than sending them as they come, and the users pay for it in waiting.

The plan is Poisson arrivals at 2 requests/s, 40 per arm, against passthrough, window:period=2,
batch:k=8,max_wait=2 and concurrency-cap:c=1, played on a virtual clock 4x faster (`--speed 4`, and
the wall-clock plan 4x denser with 4x shorter holds), so the four arms take about 20 s, not 80 s.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from e2e_stack import flag_codes, output, run_folder, summary
from joulebench_testkit import run_joulebench, run_mock_server, simulated_sidecar

pytestmark = [pytest.mark.slow, pytest.mark.alone]

SPEED = 4  # simulated seconds per wall-clock second
RATE = 2 * SPEED  # 2 requests/s of simulated time
PERIOD_S = 2 / SPEED  # 2 s of simulated time
ARMS = {
    "passthrough": "passthrough",
    "window": f"window:period={PERIOD_S:g}",
    "batch": f"batch:k=8,max_wait={PERIOD_S:g}",
    "cap": "concurrency-cap:c=1",
}
N = 40
HOLD_SLACK_MS = 30  # the runner's wake-up and a release's send, on two shared cores


@pytest.fixture(scope="module")
def shaped_run(tmp_path_factory):
    logs, cwd = tmp_path_factory.mktemp("stack"), tmp_path_factory.mktemp("shaped")
    with (
        run_mock_server("--seed", "1", "--speed", str(SPEED), log_dir=logs) as mock,
        simulated_sidecar(mock.url, "--interval", "0.05", log_dir=logs) as side,
    ):
        policies = [arg for spec in ARMS.values() for arg in ("--policy", spec)]
        result = run_joulebench(
            "run", "--target", mock.url, "--sidecar", side.url, "--prompts", "synthetic",
            "--schedule", f"poisson:rate={RATE}", *policies, "--n", str(N), "--max-tokens", "64",
            "--ignore-eos", "--seed", "1", "--idle", "1", "--server-metrics", "off", "--out", "runs", cwd=cwd,
        )  # fmt: skip
    assert result.returncode == 0, output(result)
    folder = run_folder(result, cwd)
    by_kind = {arm["policy"]["spec"].split(":")[0]: arm for arm in summary(folder)["arms"]}
    arms = {key: by_kind[spec.split(":")[0]] for key, spec in ARMS.items()}
    requests = pd.read_parquet(folder / "requests.parquet")
    return folder, arms, requests[~requests["warmup"]], result


def test_every_request_succeeds_on_time(shaped_run) -> None:
    folder, arms, requests, _ = shaped_run
    assert (requests["status"] == "ok").all(), requests["error"].dropna().head()
    for arm in arms.values():
        assert arm["requests"]["ok"] == N
        assert arm["lateness_ms"]["p99"] < arm["lateness_ms"]["bound"]  # users arrived as planned
    assert not {"lateness_over_bound", "power_incomplete", "no_power_data"} & flag_codes(summary(folder))


def test_holding_and_releasing_together_costs_fewer_joules_per_request(shaped_run) -> None:
    _, arms, _, result = shaped_run
    direct = arms["passthrough"]
    for key in ("window", "batch"):
        grouped = arms[key]
        assert grouped["all_in"]["j_per_request"] < direct["all_in"]["j_per_request"], key
        # The GPU's own work per request, where batching saves: CIs apart, not just means.
        assert grouped["j_per_request"]["ci95"][1] < direct["j_per_request"]["ci95"][0], key
    assert "as users see it" in result.stdout


def test_users_pay_the_hold_and_no_more_than_the_policy_allows(shaped_run) -> None:
    _, arms, requests, _ = shaped_run
    for key in ("window", "batch"):
        hold = arms[key]["hold_ms"]
        assert hold["p50"] > 0.1 * PERIOD_S * 1e3
        assert hold["max"] < PERIOD_S * 1e3 + HOLD_SLACK_MS  # no request waits longer than the policy says
        latency = arms[key]["latency_s"]
        assert latency["user_e2e"]["p50"] > latency["e2e"]["p50"] + hold["p50"] / 1e3 / 2
    assert arms["passthrough"]["hold_ms"]["p99"] < HOLD_SLACK_MS
    # Per request, what the user waited is the server's time plus the hold, exactly.
    user = requests["done_ns"] - requests["arrived_ns"]
    assert (user == requests["done_ns"] - requests["sent_ns"] + requests["hold_ns"]).all()


def test_the_cap_never_has_two_requests_at_the_server(shaped_run) -> None:
    _, arms, requests, _ = shaped_run
    capped = requests[requests["arm"] == arms["cap"]["name"]]
    starts = np.stack([capped["sent_ns"].to_numpy(np.int64), np.ones(len(capped), np.int64)], 1)
    ends = np.stack([capped["done_ns"].to_numpy(np.int64), -np.ones(len(capped), np.int64)], 1)
    events = np.concatenate([starts, ends])
    events = events[np.lexsort((events[:, 1], events[:, 0]))]  # an end before a start at the same time
    assert np.cumsum(events[:, 1]).max() == 1
    assert (capped["hold_ns"] > 1_000_000).sum() >= 3  # and it had to hold some: the cap was tested
