"""The power stage's choices without any server: which source the join gets (and the fallback when the
primary has nothing), the GPUs summed, the clock mapping of the Prometheus sources, and the join's flags
for each clock mode."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.energy import ArmWindow, analyze
from harness.power.series import EnergySeries, PowerData
from harness.power.sources.clockmap import SidecarInfo, counter_clock
from harness.runfolder.power_file import load_power
from harness.session.config import PowerConfig
from harness.session.power_stage import PowerStage, _Source
from harness.session.stage_state import MeasureState

S = 1_000_000_000


def series(gpu: str, watts: float, t0: int = 0, t1: int = 10 * S) -> EnergySeries:
    t = np.arange(t0, t1 + 1, S // 10, dtype=np.int64)
    return EnergySeries(gpu, t, watts * (t - t0) / S, source="test")


class FakeReader:
    def __init__(self, data: PowerData | None = None, error: str | None = None) -> None:
        self.data, self.error = data, error

    def read(self, start_ns: int, end_ns: int) -> PowerData:
        if self.error:
            raise InputError(self.error)
        assert self.data is not None
        return self.data


@dataclass
class Result:
    start_ns: int = 2 * S
    end_ns: int = 8 * S


class Folder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sections: dict = {}

    def update_manifest(self, **sections) -> None:
        self.sections.update(sections)


@dataclass
class Ctx:
    folder: Folder


def stage(tmp_path: Path, sources: list[_Source], gpus: tuple[str, ...] | None = None) -> tuple:
    state = MeasureState()
    power = PowerStage(PowerConfig(gpus=gpus), state, Console(file=io.StringIO()))
    power.sources = sources
    ctx = Ctx(Folder(tmp_path))
    return power, state, ctx


def test_primary_and_cross_check_totals(tmp_path) -> None:
    main = _Source("sidecar", "http://s", FakeReader(PowerData([series("0", 100.0)], "sidecar")), "nvml")
    other = _Source("prometheus", "http://p", FakeReader(PowerData([series("0", 102.0)], "prom")), "nvml")
    power, state, ctx = stage(tmp_path, [main, other])
    power.after(ctx, Result())
    sources = ctx.folder.sections["power"]["sources"]
    assert [s["role"] for s in sources] == ["primary", "cross-check"]
    assert sources[0]["run_energy_j"] == pytest.approx(600.0)  # 100 W over the 6 s run window
    assert sources[1]["difference_vs_primary"] == pytest.approx(0.02)
    assert (tmp_path / sources[1]["file"]).is_file()
    assert load_power(tmp_path).source == "sidecar" and state.counter_period_s == 0.1


def test_a_primary_without_data_falls_back_and_says_so(tmp_path) -> None:
    dead = _Source("sidecar", "http://s", FakeReader(error="http://s: cannot read the sidecar"), "simulated")
    alive = _Source("prometheus", "http://p", FakeReader(PowerData([series("0", 50.0)], "prom")), "simulated")
    power, state, ctx = stage(tmp_path, [dead, alive])
    power.after(ctx, Result())
    saved = load_power(tmp_path)
    assert saved.source == "prom" and state.primary_kind == "prometheus"
    assert (
        "primary power source sidecar http://s failed (http://s: cannot read the sidecar)" in saved.issues[0]
    )
    sources = ctx.folder.sections["power"]["sources"]
    assert sources[0]["error"] and sources[1]["role"] == "primary"
    assert "file" not in sources[1] and not (tmp_path / "power_sources").exists()  # saved once, as primary
    assert state.counter_period_s == 0.0  # the simulated GPU's counter is exact


def test_no_source_with_data_leaves_an_empty_series_that_says_why(tmp_path) -> None:
    dead = _Source("prometheus", "http://p", FakeReader(error="http://p: cannot query Prometheus"), "nvml")
    power, _, ctx = stage(tmp_path, [dead])
    power.after(ctx, Result())
    saved = load_power(tmp_path)
    assert saved.series == [] and saved.issues == ["http://p: cannot query Prometheus"]


def test_only_the_selected_gpus_are_summed(tmp_path) -> None:
    data = PowerData([series("0", 100.0), series("1", 30.0)], "sidecar")
    power, _, ctx = stage(
        tmp_path, [_Source("sidecar", "http://s", FakeReader(data), "nvml")], gpus=("1", "2")
    )
    power.after(ctx, Result())
    saved = load_power(tmp_path)
    assert [s.gpu for s in saved.series] == ["1"]
    assert "sidecar: no series for GPU 2 (selected with --gpus)" in saved.issues
    assert ctx.folder.sections["power"]["sources"][0]["run_energy_j"] == pytest.approx(180.0)


def test_counter_clock_from_the_sidecars_boot_id() -> None:
    anchor = ClockAnchor.now()
    same = counter_clock(SidecarInfo(frozenset({anchor.boot_id}), frozenset({"nvml"})), anchor)
    assert same is not None and same.same_kernel and same.epoch_offset_ns == 0 and same.rtt_ns == 0
    # Another host and no sidecar URL to probe, or no sidecar seen, or several hosts: unmeasured.
    assert counter_clock(SidecarInfo(frozenset({"other"}), frozenset()), anchor) is None
    assert counter_clock(SidecarInfo(frozenset(), frozenset()), anchor) is None
    assert counter_clock(SidecarInfo(frozenset({anchor.boot_id, "other"}), frozenset()), anchor) is None


def _flags_for(clock: dict) -> dict[str, str]:
    requests = pd.DataFrame(
        {
            "request_id": [0, 1], "arm": ["a", "a"], "warmup": [False, False], "status": ["ok", "ok"],
            "stream": [True, True], "planned_ns": [2 * S, 4 * S], "sent_ns": [2 * S, 4 * S],
            "first_token_ns": [3 * S, 5 * S], "last_token_ns": [3 * S, 5 * S], "done_ns": [3 * S, 5 * S],
            "lateness_ns": [0, 0], "chunk_ns": [np.array([3 * S]), np.array([5 * S])], "chunks": [1, 1],
            "prompt_tokens": [10, 10], "output_tokens": [1, 1],
        }
    )  # fmt: skip
    for col in ("planned_ns", "sent_ns", "first_token_ns", "last_token_ns", "done_ns", "lateness_ns"):
        requests[col] = requests[col].astype("Int64")
    data = PowerData([series("0", 100.0)], "test", clock=clock)
    analysis = analyze(requests, data, arms=[ArmWindow("a", 2 * S, 8 * S)])
    return {f.code: f.severity for f in analysis.flags}


def test_the_join_flags_each_clock_mode() -> None:
    assert "clock_unmeasured" not in _flags_for({"mode": "same-host"})
    assert (
        _flags_for({"mode": "epoch", "note": "assumes the hosts' clocks agree"})["clock_unmeasured"]
        == "warning"
    )
    measured = _flags_for({"mode": "offset", "uncertainty_ns": 400_000, "same_kernel": False})
    assert measured["clock_offset"] == "info" and "clock_unmeasured" not in measured
