"""An overloaded arm is flagged and fails --strict (issue 19): the real `joulebench run` against the mock
server and the simulated sidecar, held to `--max-in-flight 1` on a schedule one request at a time cannot
keep (each takes longer than the 10 ms gap), and to a loop-lag bound no event loop meets (1 µs): both are
deterministic, whatever the machine's load. The summary, the page and a rebuilt report say so."""

from __future__ import annotations

import pytest
from e2e_stack import flag_codes, output, run_folder, summary
from joulebench_testkit import run_joulebench, run_mock_server, simulated_sidecar

pytestmark = pytest.mark.slow


def test_a_capped_and_lagging_arm_is_flagged_and_strict_fails(tmp_path) -> None:
    with (
        run_mock_server("--seed", "1", log_dir=tmp_path) as mock,
        simulated_sidecar(mock.url, "--interval", "0.05", log_dir=tmp_path) as side,
    ):
        result = run_joulebench(
            "run", "--target", mock.url, "--sidecar", side.url, "--schedule", "fixed:interval=0.01",
            "--n", "20", "--max-tokens", "32", "--warmup", "0", "--idle", "0.5", "--max-in-flight", "1",
            "--max-loop-lag-ms", "0.001", "--strict", "--out", "runs", cwd=tmp_path, timeout=180,
        )  # fmt: skip
    assert result.returncode == 1, output(result)
    folder = run_folder(result, tmp_path)
    doc = summary(folder)
    (arm,) = doc["arms"]
    assert {"in_flight_capped", "loop_lag_over_bound"} <= set(arm["flags"])
    client = arm["client"]
    assert client["in_flight_max"] == 1 and client["capped"] >= 15
    assert client["loop_lag_bound_ms"] == 0.001 and client["loop_lag_ms"]["p99"] > 0.001
    assert 0 < client["cpu_share"] < 1
    late = arm["lateness_ms"]
    assert late["at"] == "wire" and late["p50"] > late["dispatch"]["p50"]
    errors = {f["code"] for f in doc["flags"] if f["severity"] == "error"}
    assert {"in_flight_capped", "loop_lag_over_bound"} <= errors
    assert "requests waited at --max-in-flight" in result.stdout
    page = (folder / "report.html").read_text()
    assert "held: CAPPED" in page and "(bound 0.001): EXCEEDED" in page and "(at the wire)" in page

    # The report rebuilt from the folder alone flags the same and fails --strict the same way.
    report = run_joulebench("report", str(folder), "--quiet", "--strict", cwd=tmp_path)
    assert report.returncode == 1, output(report)
    assert {"in_flight_capped", "loop_lag_over_bound"} <= flag_codes(summary(folder))
