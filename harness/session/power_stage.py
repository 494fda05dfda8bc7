"""The power stage: check the sources before the run, poll the sidecar during it, fetch and save after.

One source is primary: its series go into `power.parquet`, which the join reads. The others are read
over the same window for a cross-check: their series go to `power_sources/<kind>/power.parquet` and
their run totals next to the primary's in `manifest.json` (`power.sources`). A primary that yields no
data falls back to the next source that has some; the join's flags say so (`power_issue`).

So that a run killed before the end keeps its power, the sources are named in the manifest when the
run starts, and every page polled from the sidecar is appended to `power_samples.jsonl` as it arrives;
reading the folder (or `joulebench recover`) rebuilds power.parquet from it (runfolder/folder.py).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from foundation.errors import InputError
from foundation.redact import redact_userinfo
from harness.clock import ClockAnchor
from harness.energy.grid import window_energy
from harness.energy.power_lag import SEARCH_S
from harness.power.gpu_backend import counter_period_s, sensor_delay_s
from harness.power.series import PowerData
from harness.power.sources import DcgmSource, PrometheusSource, SidecarSource
from harness.power.sources.clockmap import counter_clock, prometheus_clock, sidecar_info
from harness.power.sources.dcgm import ENERGY as DCGM_ENERGY
from harness.power.sources.dcgm import POWER as DCGM_POWER
from harness.power.sources.promapi import PrometheusAPI, with_selector
from harness.runfolder.power_file import RawSampleLog, save_power
from harness.runner import RunResult
from harness.session.config import PowerConfig
from harness.session.pipeline import RunContext
from harness.session.stage_state import MeasureState

CROSS_CHECK_DIR = "power_sources"

# Power trails the requests by up to the lag search range (docs/energy.md, "Power lag"): read that much
# before and after the window, so that the join's shift of the series still has power under both ends.
LAG_MARGIN_NS = (round(-SEARCH_S[0] * 1e9), round(SEARCH_S[1] * 1e9))


@dataclass(eq=False)  # compared by identity
class _Source:
    kind: str
    location: str
    reader: SidecarSource | PrometheusSource | DcgmSource
    backend: str  # what produces the readings: nvml, simulated, dcgm
    data: PowerData | None = None
    error: str | None = None
    polls: int = 0
    poll_errors: list[str] = field(default_factory=list)


@dataclass(eq=False)  # compared and hashed by identity
class PowerStage:
    """Reads power from the configured sources around the run (see the module docstring)."""

    config: PowerConfig  # its `sidecar`: a URL, or a sample log's path (`joulebench merge --power-samples`)
    state: MeasureState
    console: Console
    # False where this process's monotonic clock is not the anchor's (`joulebench merge` on another host
    # than the run's shard 0): an offset probed from here would be this host's, not the run's, so the
    # sources map through epoch time instead (flagged clock_unmeasured) unless they share its kernel.
    probe_clocks: bool = True
    sources: list[_Source] = field(default_factory=list, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _poller: threading.Thread | None = field(default=None, init=False)
    _recording: RawSampleLog | None = field(default=None, init=False)

    # -- before anything is written ----------------------------------------------------------------

    def preflight(self, anchor: ClockAnchor) -> None:
        """Reach every source now (one-line InputError otherwise), so a run never starts unmeasured."""
        cfg = self.config
        for kind, location in cfg.sources.items():
            if kind == "sidecar":
                self.sources.append(self._sidecar(location, anchor))
            elif kind == "prometheus":
                self.sources.append(self._prometheus(location, anchor))
            else:
                self.sources.append(self._dcgm(location, anchor))

    @property
    def simulated(self) -> bool:
        """Whether the primary source reads the mock's simulated GPU (whose counter is exact)."""
        return bool(self.sources) and self.sources[0].backend == "simulated"

    def _sidecar(self, location: str, anchor: ClockAnchor) -> _Source:
        reader = SidecarSource(location, anchor=anchor)
        reader.poll()
        try:
            header = reader.sessions()[-1].header
        except InputError as exc:
            if reader.is_http:
                raise
            raise InputError(f"--power-samples {exc}") from None  # the file's error starts with its path
        have = [str(g["index"]) for g in header.get("gpus", [])]
        flag = "--sidecar" if reader.is_http else "--power-samples"
        self._check_gpus(f"{flag} {location}", have)
        return _Source("sidecar", redact_userinfo(location), reader, str(header.get("backend", "")), polls=1)

    def _prometheus(self, url: str, anchor: ClockAnchor) -> _Source:
        cfg = self.config
        if not PrometheusAPI(url, timeout_s=10.0).query(with_selector(PrometheusSource.ENERGY, cfg.selector)):
            where = f"{{{cfg.selector}}}" if cfg.selector else ""
            raise InputError(
                f"--prometheus {url}: no {PrometheusSource.ENERGY}{where} series: is it scraping the sidecar?"
            )
        info = sidecar_info(url, cfg.selector)
        probe = cfg.sidecar if self.probe_clocks and _is_http(cfg.sidecar) else None  # not a sample log
        offset = counter_clock(info, anchor, probe)
        reader = PrometheusSource(
            url, selector=cfg.selector, step_s=cfg.prometheus_step_s, anchor=anchor, offset=offset
        )
        backend = next(iter(info.backends)) if len(info.backends) == 1 else "nvml"
        return _Source("prometheus", redact_userinfo(url), reader, backend)

    def _dcgm(self, url: str, anchor: ClockAnchor) -> _Source:
        cfg = self.config
        api = PrometheusAPI(url, timeout_s=10.0)
        found = api.query(with_selector(DCGM_ENERGY, cfg.selector)) or api.query(
            with_selector(DCGM_POWER, cfg.selector)
        )
        if not found:
            raise InputError(
                f"--dcgm {url}: no {DCGM_ENERGY} or {DCGM_POWER} series: is it scraping dcgm-exporter?"
            )
        offset = prometheus_clock(url, anchor) if self.probe_clocks else None
        reader = DcgmSource(
            url, selector=cfg.selector, step_s=cfg.prometheus_step_s, anchor=anchor, offset=offset
        )
        return _Source("dcgm", redact_userinfo(url), reader, "dcgm")

    def _check_gpus(self, where: str, have: list[str]) -> None:
        missing = [g for g in self.config.gpus or () if g not in have]
        if missing:
            raise InputError(f"--gpus: no GPU {missing[0]} at {where} (it has: {', '.join(have) or 'none'})")

    # -- during the run ----------------------------------------------------------------------------

    def before(self, ctx: RunContext) -> None:
        ctx.folder.update_manifest(
            power={
                "primary": self.sources[0].kind if self.sources else None,
                "gpus": list(self.config.gpus) if self.config.gpus else None,
                "sources": [
                    {"kind": s.kind, "location": s.location, "backend": s.backend} for s in self.sources
                ],
            }
        )
        sidecars = [s for s in self.sources if s.kind == "sidecar"]
        if sidecars:
            assert isinstance(sidecars[0].reader, SidecarSource)
            self._recording = RawSampleLog(ctx.folder.path)
            sidecars[0].reader.record(self._recording)
            self._poller = threading.Thread(
                target=self._poll, args=(sidecars[0],), name="sidecar-poll", daemon=True
            )
            self._poller.start()

    def _poll(self, source: _Source) -> None:
        assert isinstance(source.reader, SidecarSource)
        while not self._stop.wait(self.config.poll_s):
            try:
                source.reader.poll()
                source.polls += 1
            except InputError as exc:  # the sidecar went away: keep what we have, say so, keep trying
                source.poll_errors.append(f"{time.monotonic_ns()}: {exc}")

    def _stop_polling(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
            self._poller = None

    def close(self) -> None:
        self._stop_polling()
        if self._recording is not None:
            self._recording.close()

    # -- after the run -----------------------------------------------------------------------------

    def after(self, ctx: RunContext, result: RunResult) -> None:
        self._stop_polling()
        _, end = self.state.window(result)
        wait = end + LAG_MARGIN_NS[1] + int(self.settle_s * 1e9) - time.monotonic_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
        self.collect(ctx, result)

    def collect(self, ctx: RunContext, result: RunResult) -> None:
        """Read every source over the window, save the primary's series and describe them all (the
        readings after the window's end must exist by now: `after` waits for them)."""
        start, end = self.state.window(result)
        start, end = start - LAG_MARGIN_NS[0], end + LAG_MARGIN_NS[1]
        for source in self.sources:
            try:
                source.data = source.reader.read(start, end).select_gpus(self.config.gpus, source.kind)
            except InputError as exc:
                source.error = str(exc)
        self.close()  # the last poll (in read) is in power_samples.jsonl
        chosen, primary = self._primary()
        folder = ctx.folder.path
        save_power(folder, primary)
        sections = []
        for source in self.sources:
            entry = self._describe(source, result)
            if source.kind == "sidecar" and self._recording is not None:
                entry["raw_samples"] = self._recording.path.name
                if self._recording.error:
                    entry["raw_samples_error"] = self._recording.error
            if source.data is not None and source is not chosen:
                path = save_power(folder / CROSS_CHECK_DIR / source.kind, source.data)
                entry["file"] = str(path.relative_to(folder))
            sections.append(entry)
        (main,) = [e for e in sections if e["kind"] == self.state.primary_kind]
        for entry in sections:
            entry["role"] = "primary" if entry is main else "cross-check"
            ref, mine = main.get("run_energy_j"), entry.get("run_energy_j")
            if entry is not main and ref and mine is not None:
                entry["difference_vs_primary"] = (mine - ref) / ref
        ctx.folder.update_manifest(
            power={
                "primary": self.state.primary_kind,
                "gpus": list(self.config.gpus) if self.config.gpus else None,
                "window": {"start_ns": start, "end_ns": end},
                "sources": sections,
            }
        )
        self._say(sections)

    @property
    def settle_s(self) -> float:
        """How long after the window's end a counter reading (and, for Prometheus, a scrape of it) exists."""
        return 0.6 if self.sidecar_only else 0.6 + 2 * self.config.prometheus_step_s

    @property
    def sidecar_only(self) -> bool:
        return all(s.kind == "sidecar" for s in self.sources)

    def _primary(self) -> tuple[_Source, PowerData]:
        """The source the join uses and its data: the primary's, or, when the primary has none, the first
        other source's that has some (the data then says why)."""
        usable = [
            s for s in self.sources if s.data is not None and any(len(x.t_ns) > 1 for x in s.data.series)
        ]
        first = self.sources[0]
        chosen = first if first in usable else (usable[0] if usable else first)
        self.state.primary_kind = chosen.kind
        self.state.counter_period_s = counter_period_s(chosen.backend)
        self.state.sensor_delay_s = sensor_delay_s(chosen.backend)
        if chosen.data is None:  # nothing usable anywhere: an empty series set that says why
            return chosen, PowerData(
                series=[], source=f"{first.kind} {first.location}", issues=[first.error or "no data"]
            )
        if chosen is not first:
            why = first.error or "no power samples in the run window"
            note = (
                f"primary power source {first.kind} {first.location} failed ({why}); "
                f"used {chosen.kind} {chosen.location} instead"
            )
            data = chosen.data
            return chosen, PowerData(data.series, data.source, data.clock, [note, *data.issues])
        return chosen, chosen.data

    def _describe(self, source: _Source, result: RunResult) -> dict[str, Any]:
        entry: dict[str, Any] = {"kind": source.kind, "location": source.location, "backend": source.backend}
        if source.kind == "sidecar":
            entry["polls"] = source.polls
            entry["poll_errors"] = source.poll_errors[:20]
        if source.error is not None or source.data is None:
            entry["error"] = source.error
            return entry
        data = source.data
        total, covered = 0.0, []
        for s in data.series:
            joules, seconds = window_energy(s, result.start_ns, result.end_ns)
            total += joules if joules == joules else 0.0  # NaN: this GPU has nothing in the window
            covered.append(seconds)
        duration = (result.end_ns - result.start_ns) / 1e9
        entry.update(
            clock=data.clock,
            issues=list(data.issues) + [i for s in data.series for i in s.issues],
            gpus=[
                {"gpu": s.gpu, "uuid": s.uuid, "name": s.name, "samples": len(s.t_ns)} for s in data.series
            ],
            run_energy_j=total if data.series and covered and min(covered) > 0 else None,
            run_covered_share=(min(covered) / duration) if covered and duration > 0 else None,
        )
        return entry

    def _say(self, sections: list[dict[str, Any]]) -> None:
        for entry in sections:
            where = f"{entry['kind']} {entry['location']}"
            if entry.get("error"):
                self.console.print(f"[yellow]power:[/] {where}: {entry['error']}", highlight=False)
                continue
            total = entry.get("run_energy_j")
            text = f"{total:,.1f} J over the run" if total is not None else "no energy over the run"
            diff = entry.get("difference_vs_primary")
            if diff is not None:
                text += f" ({diff:+.2%} vs the primary)"
            self.console.print(f"power: {where} ({entry['role']}): {text}", highlight=False)


def _is_http(location: str | None) -> bool:
    return bool(location) and str(location).startswith(("http://", "https://"))
