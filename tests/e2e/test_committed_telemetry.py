"""docs/results/gpu/telemetry-h200: the real NVML telemetry the page quotes is what its committed sample log
holds, read with joulebench's own sample-log reader (the one the join uses)."""

from __future__ import annotations

from collections import Counter

import numpy as np
from joulebench_testkit import REPO

from harness.energy.throttle import reason_names, throttling
from harness.power.samplelog import POWER_ROW, STATE_COLUMNS, read_log_file

FOLDER = REPO / "docs" / "results" / "gpu" / "telemetry-h200"


def test_the_committed_log_holds_what_the_page_says() -> None:
    (session,) = read_log_file(FOLDER / "telemetry_samples.jsonl")
    header, rows = session.header, session.rows
    assert header["backend"] == "nvml" and header["phase_jitter"] is True
    assert header["gpus"][0]["name"] == "NVIDIA H200"
    assert header["host_energy"]["domains"] == [] and "powercap" in header["host_energy"]["note"]
    state = rows.state[~np.isnan(rows.state).all(axis=1)]
    column = {name: state[:, i] for i, name in enumerate(STATE_COLUMNS)}
    assert len(state) == 15
    assert (column["sm_clock_hz"].min(), column["sm_clock_hz"].max()) == (345e6, 1980e6)
    assert set(column["mem_clock_hz"]) == {3201e6}
    assert (column["temperature_c"].min(), column["temperature_c"].max()) == (38.0, 59.0)
    assert set(column["power_limit_w"]) == {700.0}
    masks = [int(m) for m in column["throttle_reasons"]]
    assert Counter(n for m in masks for n in reason_names(m)) == {"gpu_idle": 8}
    assert not any(throttling(m) for m in masks)
    power = rows.power_w[rows.kind == POWER_ROW]
    assert round(power.min()) == 78 and round(power.max()) == 681
    gaps_ms = np.sort(np.diff(rows.t_ns[rows.kind == POWER_ROW]) / 1e6)
    p5, p95 = np.percentile(gaps_ms, [5, 95])
    page = " ".join((FOLDER / "README.md").read_text().split())
    assert f"average {gaps_ms.mean():.0f} ms and spread from {gaps_ms[0]:.1f} to {gaps_ms[-3]:.0f} ms" in page
    assert f"5th–95th percentile {p5:.0f}–{p95:.0f} ms)" in page
    assert f"{gaps_ms[-1]:.0f} ms at its start" in page and f"{gaps_ms[-2]:.0f} ms about 4 s in" in page


def test_the_page_quotes_the_probe_output_in_full() -> None:
    page = (FOLDER / "README.md").read_text()
    for line in (FOLDER / "telemetry_probe.txt").read_text().splitlines():
        assert line in page
