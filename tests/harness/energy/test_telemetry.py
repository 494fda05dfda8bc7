"""The run's telemetry section (issue 16): throttle reasons decoded, clocks and limits per GPU, throttle
shares per arm with the `gpu_throttled` and `power_limit_changed` flags, and RAPL energy per window,
from synthetic series and from a run folder's raw sidecar samples."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness.clock import ClockAnchor
from harness.energy.flags import FlagList
from harness.energy.telemetry import summarize_telemetry
from harness.energy.throttle import reason_names, throttling
from harness.power.series import HostEnergySeries, StateSeries, Telemetry
from harness.runfolder.telemetry_samples import read_telemetry

S = 1_000_000_000
NAN = math.nan


def test_reasons_decode_and_idle_or_application_clocks_are_not_throttling() -> None:
    assert reason_names(0) == [] and throttling(0) == []
    assert reason_names(0x1 | 0x2) == ["gpu_idle", "applications_clocks_setting"]
    assert throttling(0x1 | 0x2 | 0x10 | 0x100) == []
    assert throttling(0x4 | 0x1) == ["sw_power_cap"]
    assert throttling(0x8 | 0x20 | 0x40 | 0x80) == [
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
    ]
    assert reason_names(0x200 | 0x4) == ["sw_power_cap", "bit_0x200"]  # a bit newer than the table


def _state(rows: list[tuple[float, float, float, float, float]]) -> StateSeries:
    t = np.arange(len(rows), dtype=np.int64) * S
    return StateSeries("0", t, np.array(rows, dtype=np.float64))


def test_summary_ranges_shares_and_flags() -> None:
    # Arm "a" over t = 0..3 s: idle, idle; arm "b" over 4..7 s: capped in 2 of 4 readings, then hot.
    series = _state(
        [
            (1.0e9, 2.6e9, 40, 700, 0x1),
            (1.2e9, 2.6e9, 41, 700, 0x1),
            (1.4e9, 2.6e9, 42, 700, 0),
            (1.6e9, 2.6e9, 43, 700, NAN),
            (1.9e9, 2.6e9, 60, 700, 0x4),
            (1.9e9, 2.6e9, 70, 700, 0x4),
            (1.98e9, 2.6e9, 88, 700, 0),
            (1.5e9, 2.6e9, 91, 700, 0x20 | 0x1),
        ]
    )
    flags = FlagList()
    doc = summarize_telemetry(
        Telemetry([series], [], "no RAPL here"),
        ("run", 0, 7 * S),
        [("a", 0, 3 * S), ("b", 4 * S, 7 * S)],
        flags,
    )
    (gpu,) = doc["gpus"]
    assert gpu["sm_clock_hz"] == {"min": 1.0e9, "median": pytest.approx(1.55e9), "max": 1.98e9}
    assert gpu["temperature_c"]["max"] == 91 and gpu["power_limits_w"] == [700.0]
    assert gpu["arms"]["a"] == {"samples": 4, "throttle_share": {"gpu_idle": 2 / 3}, "throttled_share": 0.0}
    b = gpu["arms"]["b"]
    assert b["throttled_share"] == 0.75
    assert b["throttle_share"] == {"gpu_idle": 0.25, "sw_power_cap": 0.5, "sw_thermal_slowdown": 0.25}
    assert [(f.code, f.severity, f.scope) for f in flags] == [("gpu_throttled", "warning", "b")]
    assert "GPU 0 in 75% of its readings (sw_power_cap 50%, sw_thermal_slowdown 25%)" in flags[0].message
    assert doc["host_energy"] == {"available": False, "note": "no RAPL here", "domains": []}


def test_a_power_limit_change_is_flagged_and_an_unthrottled_run_is_not() -> None:
    series = _state([(1e9, 2e9, 40, 700, 0), (1e9, 2e9, 40, 700, 0), (1e9, 2e9, 40, 350, 0)])
    flags = FlagList()
    doc = summarize_telemetry(Telemetry([series], [], None), ("run", 0, 2 * S), [("a", 0, 2 * S)], flags)
    assert doc["gpus"][0]["power_limits_w"] == [700.0, 350.0]
    assert [(f.code, f.scope) for f in flags] == [("power_limit_changed", "run")]
    assert "700 W → 350 W" in flags[0].message


def test_host_energy_per_window_and_none_where_not_covered() -> None:
    t = np.arange(0, 11, dtype=np.int64) * S
    package = HostEnergySeries("package-0", "package", "intel-rapl:0", t, 40.0 * np.arange(11.0))
    doc = summarize_telemetry(
        Telemetry([], [package], None),
        ("run", S // 2, 10 * S),
        [("a", S // 2, 4 * S), ("b", 9 * S, 12 * S)],
        FlagList(),
    )
    (domain,) = doc["host_energy"]["domains"]
    assert doc["host_energy"]["available"] is True
    assert domain["run_j"] == pytest.approx(40.0 * 9.5)
    assert domain["arms"] == {"a": pytest.approx(140.0), "b": None}  # b ends after the last reading


def _header(anchor: ClockAnchor, host_energy: dict | None) -> dict:
    header = {
        "format": "joulebench-samples", "schema_version": 1, "backend": "simulated",
        "clock": anchor.as_dict(), "interval_s": 0.1, "counter_interval_s": 0.5,
        "gpus": [{"index": 0, "uuid": "GPU-0"}],
        "columns": ["seq", "t_ns", "gpu", "kind", "power_w", "power_avg_w", "energy_j", "flags"],
    }  # fmt: skip
    return header if host_energy is None else {**header, "host_energy": host_energy}


def test_run_folder_reader_joins_sessions_and_says_when_there_is_no_rapl(tmp_path: Path) -> None:
    anchor = ClockAnchor.now()
    t0 = anchor.mono_ns
    domains = {"domains": [{"index": 0, "zone": "intel-rapl:0", "name": "package-0", "kind": "package"}],
               "note": None}  # fmt: skip
    lines = [
        _header(anchor, domains),
        [0, t0, 0, "s", None, None, None, 0, 1.9e9, 2.6e9, 50.0, 150.0, 4],
        [1, t0, 0, "h", None, None, 100.0, 0],
        [2, t0 + S, 0, "h", None, None, 130.0, 0],
        _header(anchor, domains),  # the sidecar restarted: its counter total starts afresh
        [0, t0 + 2 * S, 0, "h", None, None, 5.0, 0],
        [1, t0 + 3 * S, 0, "h", None, None, 25.0, 0],
        [2, t0 + 3 * S, 0, "s", None, None, None, 0, None, None, 55.0, 150.0, 0],
    ]
    (tmp_path / "power_samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    manifest = {"clock": {"anchor": anchor.as_dict()}}
    telemetry = read_telemetry(tmp_path, manifest)
    (gpu,) = telemetry.gpus
    assert gpu.t_ns.tolist() == [t0, t0 + 3 * S] and gpu.column("temperature_c").tolist() == [50.0, 55.0]
    (package,) = telemetry.host
    assert package.energy_j.tolist() == [0.0, 30.0, 30.0, 50.0] and telemetry.host_note is None

    (tmp_path / "power_samples.jsonl").write_text(json.dumps(_header(anchor, None)) + "\n")
    assert read_telemetry(tmp_path, manifest).host_note == "the sidecar predates host energy sampling"
    assert "not a sidecar" in (read_telemetry(tmp_path / "none", manifest).note or "")
    # A sidecar run whose folder was copied without its log: the report says the log is missing
    # rather than that the power came from elsewhere.
    recorded = {**manifest, "power": {"sources": [{"kind": "sidecar", "location": "http://127.0.0.1:9400"}]}}
    missing = read_telemetry(tmp_path / "none", recorded).note or ""
    assert missing == "power_samples.jsonl is missing from the run folder (a sidecar run writes one)"
    prometheus = {
        **manifest,
        "power": {"sources": [{"kind": "prometheus", "location": "http://127.0.0.1:9090"}]},
    }
    assert "not a sidecar" in (read_telemetry(tmp_path / "none", prometheus).note or "")
    merged = {**recorded, "merged_from": [{"shard": "0/2"}, {"shard": "1/2"}]}
    assert "merged from shards" in (read_telemetry(tmp_path / "none", merged).note or "")
