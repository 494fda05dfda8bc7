"""The sampler: fixed-cadence reading of every GPU on its own threads, into the sample ring and a status
snapshot that the Prometheus exposition renders.

Design, from what NVML costs on H100/H200 (see nvml.py):
- three loops, each on its own thread with absolute deadlines (`start + k * period`, never relative
  sleeps): `power` reads instant power at the sampling interval (10 Hz default, up to 100 Hz),
  `counter` reads the energy counter every max(interval, 0.5 s) as the exact anchor, `state` reads
  clocks/temperature/throttle/utilization/limit every max(interval, 1 s) (into the status and, as a
  state row, the ring). A 15 ms counter call thus never delays a power sample (pynvml releases the
  GIL while NVML runs), nor do the slow-changing state's seven calls;
- phase jitter: the power loop takes each sample at a uniformly random point of its period
  (`start + k * period + U[0, period)`, drawn from `SamplerConfig.jitter_seed`), one sample per period
  as before. A fixed grid samples a fixed schedule (requests every 500 ms) at the same few phases for
  the whole run, so the shape it gives the energy between counter readings, and the join's lag
  estimate, see only those phases; a random point in each period sees every phase equally often,
  turning that aliasing into noise that averages out. Deadlines stay absolute, so jitter never
  accumulates. The counter loop keeps its grid: its readings are exact wherever they fall;
- a loop that falls behind skips the deadlines already past (counted as missed) instead of bursting
  to catch up, and records each sample's lateness against its deadline (the lag histogram);
- what is no reading never enters the ring or the exported values: NaN, infinite or negative values,
  power above three times the GPU's limit; a counter reading below the last good one is held until
  the next reading says whether the counter was reset (stitched, so the exported total never
  decreases) or misread (dropped) (gpu_backend.CounterRule). Each refusal is counted per GPU, loop
  and kind, and leaves a value-less row in the ring so that the harness learns of it too;
- a GPU without a counter gets its energy by integrating instant power (trapezoids), labelled
  "integrated";
- a failing read is counted per GPU and reading (with a value-less row in the ring, like a refused one),
  and never stops the other GPUs or loops.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from harness.power.gpu_backend import (
    BackendError,
    CounterRule,
    CounterStep,
    EnergyReading,
    GpuIdentity,
    GpuState,
    PowerBackend,
    PowerReading,
    invalid,
    power_bound_w,
)
from harness.power.samplelog import (
    ENERGY_ROW,
    FLAG_INTEGRATED,
    FLAG_JUMP,
    FLAG_POWER_USAGE,
    FLAG_RESET,
    POWER_ROW,
    SampleRing,
)
from harness.power.series import STATE_COLUMNS

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.01
MAX_INTERVAL_S = 10.0
# Upper bounds of the lag histogram (seconds); lateness beyond the interval means skipped deadlines.
LAG_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LOOPS = ("power", "counter", "state")
_R = TypeVar("_R", PowerReading, EnergyReading, GpuState)
# Why a read counts as an error, per loop: the read raised ("failed"), or its value was refused.
ERROR_KINDS = {
    "power": ("failed", "invalid", "implausible"),
    "counter": ("failed", "invalid", "implausible", "glitch"),
    "state": ("failed",),
}
_RESTART_FLAGS = {None: 0, "reset": FLAG_RESET, "jump": FLAG_JUMP}


@dataclass(frozen=True)
class SamplerConfig:
    interval_s: float = 0.1
    counter_interval_s: float | None = None  # None: max(interval, 0.5 s)
    state_interval_s: float | None = None  # None: max(interval, 1 s)
    phase_jitter: bool = True  # power samples at a random point of each period (above)
    jitter_seed: int | None = None  # None: a fresh seed; an int: the same offsets every time (tests)

    def periods(self) -> dict[str, float]:
        return {
            "power": self.interval_s,
            "counter": self.counter_interval_s or max(self.interval_s, 0.5),
            "state": self.state_interval_s or max(self.interval_s, 1.0),
        }


@dataclass
class LoopStats:
    """Cadence health of one loop: samples taken, deadlines skipped, lateness distribution."""

    period_s: float
    samples: int = 0
    missed: int = 0
    lag_sum_s: float = 0.0
    lag_buckets: list[int] = field(default_factory=lambda: [0] * len(LAG_BUCKETS))

    def record(self, lag_s: float) -> None:
        self.samples += 1
        self.lag_sum_s += lag_s
        for i, bound in enumerate(LAG_BUCKETS):
            if lag_s <= bound:
                self.lag_buckets[i] += 1
                break


@dataclass
class GpuStatus:
    """The latest of everything known about one GPU (a copy is handed to the exposition)."""

    identity: GpuIdentity
    method: str  # "counter" or "integrated"
    energy_j: float | None = None  # stitched cumulative joules (counter) or the running integral
    energy_t_ns: int | None = None  # when energy_j was read
    resets: int = 0
    power_w: float | None = None
    power_avg_w: float | None = None
    power_t_ns: int | None = None
    state: GpuState = field(default_factory=GpuState)
    state_t_ns: int | None = None
    # loop -> kind -> reads that failed or were refused (ERROR_KINDS)
    errors: dict[str, dict[str, int]] = field(
        default_factory=lambda: {loop: dict.fromkeys(kinds, 0) for loop, kinds in ERROR_KINDS.items()}
    )


def phase_offsets(config: SamplerConfig, loop: str, period_ns: int) -> Callable[[], int]:
    """Each successive deadline's offset into its period (ns): uniform on [0, period) for the power loop;
    0 for the counter and state loops, or with jitter off."""
    if not config.phase_jitter or loop != "power":
        return lambda: 0
    rng = random.Random(config.jitter_seed)
    return lambda: rng.randrange(period_ns)


class _Channel:
    """Per-GPU bookkeeping that only the sampler threads touch (under the sampler's lock)."""

    def __init__(self, identity: GpuIdentity) -> None:
        self.status = GpuStatus(identity=identity, method="counter" if identity.has_counter else "integrated")
        self.counter = CounterRule()
        self.integral_j = 0.0
        self.integral_t_ns: int | None = None
        self.emitted_t_ns: int | None = None
        self.logged: set[str] = set()


class Sampler:
    def __init__(
        self,
        backend: PowerBackend,
        ring: SampleRing,
        config: SamplerConfig | None = None,
    ) -> None:
        self.backend = backend
        self.ring = ring
        self.config = config or SamplerConfig()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._channels = [_Channel(identity) for identity in backend.devices()]
        self._loops = {name: LoopStats(period_s=p) for name, p in self.config.periods().items()}
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        ticks = {"power": self._power_tick, "counter": self._counter_tick, "state": self._state_tick}
        for name in LOOPS:
            thread = threading.Thread(target=self._run_loop, args=(name, ticks[name]), name=f"sampler-{name}")
            thread.daemon = True
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the loops. A counter drop still awaiting its next reading is dropped and marked as a
        bad read: the series ends at the last consistent reading (CounterRule.finish)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        for ch in self._channels:
            with self._lock:
                step = ch.counter.finish()
            self._record_counter(ch, step)

    # -- snapshots for the exposition and status endpoints ------------------------------------------

    def gpus(self) -> list[GpuStatus]:
        with self._lock:
            return [
                replace(ch.status, errors={loop: dict(k) for loop, k in ch.status.errors.items()})
                for ch in self._channels
            ]

    def loops(self) -> dict[str, LoopStats]:
        with self._lock:
            return {name: replace(s, lag_buckets=list(s.lag_buckets)) for name, s in self._loops.items()}

    # -- the loops ---------------------------------------------------------------------------------

    def _run_loop(self, name: str, tick: Callable[[], None]) -> None:
        stats = self._loops[name]
        period_ns = round(stats.period_s * 1e9)
        offset = phase_offsets(self.config, name, period_ns)
        start = time.monotonic_ns()
        k = 0
        while True:
            deadline = start + k * period_ns + offset()
            now = time.monotonic_ns()
            while now < deadline:
                if self._stop.wait((deadline - now) / 1e9):
                    return
                now = time.monotonic_ns()
            if self._stop.is_set():
                return
            with self._lock:
                stats.record((now - deadline) / 1e9)
            tick()
            # Skip deadlines that passed while this tick ran: a late loop takes the newest one
            # (and counts the others as missed) rather than firing a burst of stale samples.
            latest_due = (time.monotonic_ns() - start) // period_ns
            if latest_due > k + 1:
                with self._lock:
                    stats.missed += latest_due - k - 1
                k = latest_due
            else:
                k += 1

    def _read(self, ch: _Channel, loop: str, read: Callable[[], _R]) -> tuple[_R, int] | None:
        """Run one backend read; return (result, timestamp) or None after counting the failure."""
        t0 = time.monotonic_ns()
        try:
            result = read()
        except Exception as exc:  # one GPU's failure must never stop the loop for the others
            with self._lock:
                ch.status.errors[loop]["failed"] += 1
            if loop != "state":  # a value-less row, so that the harness learns of it (the state has none)
                kind = POWER_ROW if loop == "power" else ENERGY_ROW
                self.ring.append_rejected(t0, ch.status.identity.index, kind, "failed")
            key = f"{loop}:{type(exc).__name__}"
            if key not in ch.logged:  # once per kind, so a dead GPU does not flood the log
                ch.logged.add(key)
                level = logging.WARNING if isinstance(exc, BackendError) else logging.ERROR
                log.log(level, "GPU %d %s read failed: %s", ch.status.identity.index, loop, exc)
            return None
        t1 = time.monotonic_ns()
        t_ns = getattr(result, "t_ns", None)
        return result, t_ns if t_ns is not None else (t0 + t1) // 2

    def _power_tick(self) -> None:
        for ch in self._channels:
            index = ch.status.identity.index
            got = self._read(ch, "power", lambda index=index: self.backend.read_power(index))
            if got is None:
                continue
            reading, t_ns = got
            why = self._refuse_power(ch, reading)
            if why is not None:
                self._refused(ch, "power", t_ns, why)
                continue
            flags = FLAG_POWER_USAGE if ch.status.identity.instant_power == "power_usage" else 0
            self.ring.append_power(t_ns, index, reading.instant_w, reading.average_w, flags)
            with self._lock:
                st = ch.status
                prev_t, prev_w = ch.integral_t_ns, st.power_w
                if st.method == "integrated" and prev_t is not None and prev_w is not None and t_ns > prev_t:
                    ch.integral_j += (prev_w + reading.instant_w) / 2 * (t_ns - prev_t) / 1e9
                if ch.integral_t_ns is None or t_ns > ch.integral_t_ns:
                    ch.integral_t_ns = t_ns
                st.power_w, st.power_avg_w, st.power_t_ns = reading.instant_w, reading.average_w, t_ns

    def _refuse_power(self, ch: _Channel, reading: PowerReading) -> str | None:
        """Why this power reading is no reading (None: it is one)."""
        if invalid(reading.instant_w) or invalid(reading.average_w):
            return "invalid"
        with self._lock:
            bound = power_bound_w(ch.status.state.power_limit_w)
        if reading.instant_w > bound or (reading.average_w or 0.0) > bound:
            return "implausible"
        return None

    def _refused(self, ch: _Channel, loop: str, t_ns: int, why: str) -> None:
        """Count a refused reading and leave its value-less row in the ring."""
        index = ch.status.identity.index
        with self._lock:
            ch.status.errors[loop][why] += 1
        key = f"{loop}:{why}"
        if key not in ch.logged:
            ch.logged.add(key)
            log.warning("GPU %d %s reading refused (%s); counted, not used", index, loop, why)
        self.ring.append_rejected(t_ns, index, POWER_ROW if loop == "power" else ENERGY_ROW, why)

    def _record_counter(self, ch: _Channel, step: CounterStep) -> None:
        """Put what the counter rule decided into the status and the ring, in time order."""
        for t_ns, why in step.dropped:
            # A drop left undecided at stop is exported and logged as a bad read: it was not used either.
            self._refused(ch, "counter", t_ns, "glitch" if why == "unconfirmed" else why)
        for t_ns, total, restart in step.kept:
            with self._lock:
                if restart is not None:
                    ch.status.resets += 1
                ch.status.energy_j, ch.status.energy_t_ns = total, t_ns
            self.ring.append_energy(t_ns, ch.status.identity.index, total, _RESTART_FLAGS[restart])

    def _counter_tick(self) -> None:
        for ch in self._channels:
            index = ch.status.identity.index
            if ch.status.method == "counter":
                got = self._read(ch, "counter", lambda index=index: self.backend.read_energy(index))
                if got is None:
                    continue
                reading, t_ns = got
                with self._lock:
                    # The counter rises in counter seconds: the mock's run `speed` times faster than ours.
                    limit = power_bound_w(ch.status.state.power_limit_w) * max(reading.speed, 1.0)
                    step = ch.counter.push(t_ns, reading.energy_j, limit)
                self._record_counter(ch, step)
            else:
                with self._lock:
                    t_ns, total = ch.integral_t_ns, ch.integral_j
                    if t_ns is None or t_ns == ch.emitted_t_ns:
                        continue
                    ch.emitted_t_ns = t_ns
                    ch.status.energy_j, ch.status.energy_t_ns = total, t_ns
                self.ring.append_energy(t_ns, index, total, FLAG_INTEGRATED)

    def _state_tick(self) -> None:
        for ch in self._channels:
            index = ch.status.identity.index
            got = self._read(ch, "state", lambda index=index: self.backend.read_state(index))
            if got is not None:
                with self._lock:
                    ch.status.state, ch.status.state_t_ns = got
                state, t_ns = got  # kept in the sample log too, so a run can tell when its GPU throttled
                self.ring.append_state(t_ns, index, [getattr(state, name) for name in STATE_COLUMNS])
