"""What `analyze` may be told: read by the join (cutting, idle windows) and the summary (flags, CIs)."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.energy.stats import BootstrapSpec


@dataclass(frozen=True)
class AnalysisOptions:
    counter_period_s: float = 0.1  # NVML energy counters update about every 100 ms
    window_error_limit: float = 0.02  # flag windows where 2 counter periods exceed this share
    min_coverage: float = 0.9  # requests with less of their lifetime under power samples are flagged
    # A window whose power samples cover less than this share (on any GPU) has an incomplete energy
    # total: no all-in figure, and an error flag on the arm (docs/energy.md, "Power coverage").
    min_power_coverage: float = 0.999
    # Bound on an arm's p99 lateness (ms); None: the default from the arm's planned gaps
    # (figures.lateness_bound, docs/energy.md "Lateness").
    max_lateness_ms: float | None = None
    # The SLO on user-side latency (s, from arrival) that goodput counts against; neither: no goodput.
    slo_ttft_s: float | None = None
    slo_e2e_s: float | None = None
    bootstrap: BootstrapSpec = field(default_factory=BootstrapSpec)
    timeline_points: int = 2000  # resolution of the power-over-time plot data
    # `--power-lag` (auto, off or seconds; declared on `run` and `report`, checked by
    # power_lag.parse_power_lag). None: the run's recorded setting (manifest energy.power_lag), else auto.
    power_lag: str | None = None
    # The power source's own delay behind the work, where it knows it (manifest energy.sensor_delay_s;
    # the simulated GPU's is 0): `auto` applies it instead of an estimate. None: estimated per run.
    sensor_delay_s: float | None = None

    @property
    def min_window_s(self) -> float:
        return 2 * self.counter_period_s / self.window_error_limit
