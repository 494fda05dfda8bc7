"""Prometheus exposition of the sampler's state (names, types and units per docs/contracts.md).

Base units throughout, so `rate(joulebench_gpu_energy_joules_total[1m])` is watts and `increase(...)`
joules. Everything is rendered from one snapshot per scrape (a custom collector), so the values of a
scrape are mutually consistent. Power and state gauges are left out once they go stale (the GPU's
reads keep failing): a frozen value would read as a live one. The energy counter stays, together
with the time it was read (`joulebench_gpu_energy_read_timestamp_seconds`), so a reader can place
each counter value at the moment it was measured rather than at the scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from harness import __version__
from harness.clock import ClockAnchor
from harness.power.rapl import RaplSampler
from harness.power.sampler import LAG_BUCKETS, Sampler

GPU_LABELS = ["gpu", "uuid"]


class SidecarCollector(Collector):
    def __init__(
        self, sampler: Sampler, anchor: ClockAnchor, backend: str, rapl: RaplSampler | None = None
    ) -> None:
        self._sampler = sampler
        self._rapl = rapl
        self._anchor = anchor
        self._backend = backend
        periods = sampler.config.periods()
        # Older than this, a reading no longer describes the GPU now.
        self._power_fresh_ns = round(max(1.0, 10 * periods["power"]) * 1e9)
        self._state_fresh_ns = round(max(5.0, 5 * periods["state"]) * 1e9)

    def collect(self) -> Iterator[Metric]:
        now = time.monotonic_ns()
        gpus = self._sampler.gpus()
        loops = self._sampler.loops()

        energy = CounterMetricFamily(
            "joulebench_gpu_energy_joules",
            "Energy used by the GPU: the NVML energy counter with resets stitched (method=counter), "
            "or integrated instant power where the GPU has no counter (method=integrated).",
            labels=[*GPU_LABELS, "method"],
        )
        energy_ts = GaugeMetricFamily(
            "joulebench_gpu_energy_read_timestamp_seconds",
            "Unix time (sidecar clock) at which the value of joulebench_gpu_energy_joules_total was read.",
            labels=GPU_LABELS,
        )
        # Not "..._counter_resets_total" (contracts.md): promtool rejects a type name inside a metric name.
        resets = CounterMetricFamily(
            "joulebench_gpu_energy_resets",
            "Resets of the GPU's energy counter (driver reload) seen and stitched by the sidecar, and "
            "jumps to another level (continued from the last value).",
            labels=GPU_LABELS,
        )
        power = GaugeMetricFamily(
            "joulebench_gpu_power_watts",
            "GPU power draw: kind=instant (NVML field 186) or kind=average (NVML's 1 s average, field 185).",
            labels=[*GPU_LABELS, "kind"],
        )
        limit = GaugeMetricFamily(
            "joulebench_gpu_power_limit_watts", "Enforced power limit.", labels=GPU_LABELS
        )
        temp = GaugeMetricFamily(
            "joulebench_gpu_temperature_celsius", "GPU core temperature.", labels=GPU_LABELS
        )
        clocks = GaugeMetricFamily(
            "joulebench_gpu_clock_hertz",
            "Current clock: clock=sm or clock=memory.",
            labels=[*GPU_LABELS, "clock"],
        )
        util = GaugeMetricFamily(
            "joulebench_gpu_utilization_ratio",
            "Share of the last sample period the GPU (unit=gpu) or its memory (unit=memory) was busy, 0..1.",
            labels=[*GPU_LABELS, "unit"],
        )
        throttle = GaugeMetricFamily(
            "joulebench_gpu_throttle_reasons",
            "Bitmask of active NVML clock-event (throttle) reasons; 0 = none.",
            labels=GPU_LABELS,
        )
        info = GaugeMetricFamily(
            "joulebench_gpu_info",
            "GPU identity (always 1).",
            labels=[*GPU_LABELS, "name", "driver", "energy_method", "instant_power"],
        )
        errors = CounterMetricFamily(
            "joulebench_gpu_read_errors",
            "Reads per GPU and sampling loop (power, counter, state) that failed (kind=failed) or whose "
            "value was refused: kind=invalid (NaN, infinite, negative), implausible (beyond what the GPU "
            "can draw), glitch (a lone counter drop, dropped as a bad read).",
            labels=[*GPU_LABELS, "loop", "kind"],
        )

        for g in gpus:
            ident = g.identity
            labels = [str(ident.index), ident.uuid]
            info.add_metric([*labels, ident.name, ident.driver, g.method, ident.instant_power], 1)
            if g.energy_j is not None and g.energy_t_ns is not None:
                energy.add_metric([*labels, g.method], g.energy_j)
                energy_ts.add_metric(labels, self._anchor.to_epoch_ns(g.energy_t_ns) / 1e9)
            resets.add_metric(labels, g.resets)
            for loop, kinds in g.errors.items():
                for kind, count in kinds.items():
                    errors.add_metric([*labels, loop, kind], count)
            if g.power_t_ns is not None and now - g.power_t_ns <= self._power_fresh_ns:
                if g.power_w is not None:
                    power.add_metric([*labels, "instant"], g.power_w)
                if g.power_avg_w is not None:
                    power.add_metric([*labels, "average"], g.power_avg_w)
            if g.state_t_ns is not None and now - g.state_t_ns <= self._state_fresh_ns:
                s = g.state
                for family, extra, value in (
                    (limit, [], s.power_limit_w),
                    (temp, [], s.temperature_c),
                    (clocks, ["sm"], s.sm_clock_hz),
                    (clocks, ["memory"], s.mem_clock_hz),
                    (util, ["gpu"], s.utilization_gpu),
                    (util, ["memory"], s.utilization_memory),
                    (throttle, [], s.throttle_reasons),
                ):
                    if value is not None:
                        family.add_metric([*labels, *extra], value)
        yield from (energy, energy_ts, resets, power, limit, temp, clocks, util, throttle, info, errors)

        lag = HistogramMetricFamily(
            "joulebench_sampler_lag_seconds",
            "Lateness of each sample against its deadline, per sampling loop.",
            labels=["loop"],
        )
        samples = CounterMetricFamily(
            "joulebench_sampler_samples", "Samples taken, per loop.", labels=["loop"]
        )
        missed = CounterMetricFamily(
            "joulebench_sampler_missed", "Deadlines skipped because the loop fell behind.", labels=["loop"]
        )
        period = GaugeMetricFamily(
            "joulebench_sampler_interval_seconds", "Configured period of each sampling loop.", labels=["loop"]
        )
        for name, s in loops.items():
            cumulative, buckets = 0, []
            for bound, count in zip(LAG_BUCKETS, s.lag_buckets, strict=True):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            buckets.append(("+Inf", s.samples))
            lag.add_metric([name], buckets, s.lag_sum_s)
            samples.add_metric([name], s.samples)
            missed.add_metric([name], s.missed)
            period.add_metric([name], s.period_s)
        sidecar = GaugeMetricFamily(
            "joulebench_sidecar_info",
            "The sidecar's backend, version and kernel boot id (always 1).",
            labels=["backend", "version", "boot_id"],
        )
        sidecar.add_metric([self._backend, __version__, self._anchor.boot_id], 1)
        yield from (lag, samples, missed, period, sidecar)
        if self._rapl is not None:
            host = CounterMetricFamily(
                "joulebench_host_energy_joules",
                "The host's CPU package or DRAM energy from RAPL (powercap), wraparound stitched, since the "
                "sidecar started reading it; never part of a GPU's energy.",
                labels=["domain", "kind", "zone"],
            )
            for domain, joules in self._rapl.latest():
                host.add_metric([domain.name, domain.kind, domain.zone], joules)
            yield host


def make_registry(
    sampler: Sampler, anchor: ClockAnchor, backend: str, rapl: RaplSampler | None = None
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SidecarCollector(sampler, anchor, backend, rapl))
    # process_cpu_seconds_total etc.: the sidecar's own cost, visible next to what it measures.
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
