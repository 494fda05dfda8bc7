"""What the sampler needs from a power source, whatever it is (NVML on a GPU host, the mock's simulated GPU).

Readings are split by cost, because their costs differ by three orders of magnitude on real GPUs: the
power fields cost microseconds and are read at the sampling rate; the energy counter costs ~3 ms
(p99 ~15 ms) and anchors the series at a lower rate; the slow-changing state (clocks, temperature,
throttle reasons, utilization, power limit) is read about once a second.

What a reading may be is decided here too, once, for the sampler and the readers alike: a value that
is not a number, infinite or negative is no reading; power above what a GPU can draw is none either;
and an energy counter that goes down is held until the next reading says whether it was reset or
misread (`CounterRule`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from foundation.errors import InputError


class BackendError(Exception):
    """One reading of one GPU failed; the sampler counts it and carries on with the other GPUs."""


class Unsupported(BackendError):
    """This GPU does not provide this reading at all (e.g. no energy counter before Volta)."""


@dataclass(frozen=True)
class GpuIdentity:
    index: int
    uuid: str
    name: str
    driver: str
    has_counter: bool  # hardware energy counter; without it the sampler integrates instant power
    instant_power: str  # "field" (NVML_FI_DEV_POWER_INSTANT), "power_usage" (fallback), "simulated"


@dataclass(frozen=True)
class PowerReading:
    instant_w: float
    average_w: float | None = None  # NVML's 1 s average (field 185), where available
    t_ns: int | None = None  # when the source itself says the value was taken (our monotonic clock)


@dataclass(frozen=True)
class EnergyReading:
    energy_j: float  # the raw cumulative counter, in joules (resets are the sampler's business)
    t_ns: int | None = None
    # Counter seconds per wall second: the mock's --speed (its counter counts simulated joules); 1 on GPUs.
    speed: float = 1.0


@dataclass(frozen=True)
class GpuState:
    power_limit_w: float | None = None
    temperature_c: float | None = None
    sm_clock_hz: float | None = None
    mem_clock_hz: float | None = None
    utilization_gpu: float | None = None  # 0..1
    utilization_memory: float | None = None  # 0..1
    throttle_reasons: int | None = None  # NVML clock-event reason bitmask


class PowerBackend(Protocol):
    """A source of GPU readings. Methods may be called from several threads at once."""

    name: str

    def devices(self) -> list[GpuIdentity]: ...

    def read_power(self, index: int) -> PowerReading: ...

    def read_energy(self, index: int) -> EnergyReading: ...

    def read_state(self, index: int) -> GpuState: ...

    def close(self) -> None: ...


# NVML's energy counter steps about every 100 ms (docs/power.md); the simulated GPU's is exact.
NVML_COUNTER_STEP_S = 0.1


def counter_period_s(backend: str) -> float:
    """How often the energy counter of a backend's GPUs steps (0: exact at every reading)."""
    return 0.0 if backend == "simulated" else NVML_COUNTER_STEP_S


def sensor_delay_s(backend: str) -> float | None:
    """How far a backend's power readings trail the GPU's work, where the backend knows it; None: not
    known (NVML's averaging), so the join estimates it per run. The simulated GPU reports its state at
    the moment it is read."""
    return 0.0 if backend == "simulated" else None


# -- what a reading may be ------------------------------------------------------------------------

# No single GPU draws this much (the largest parts are rated about 1.4 kW): the bound where the GPU's
# own power limit is not known (yet).
MAX_GPU_POWER_W = 5000.0
# Instant power can briefly overshoot the enforced limit; three times the limit leaves room for that,
# and a reading beyond it is not the GPU's.
LIMIT_OVERSHOOT = 3.0
# A counter value and the time it is stamped with can disagree by about two NVML updates (~100 ms
# each): the slack on every "how much could the GPU have counted in this time".
COUNTER_SLACK_S = 0.25


def power_bound_w(limit_w: float | None) -> float:
    """The most power a reading may show: LIMIT_OVERSHOOT times the enforced limit where it is known."""
    if limit_w is not None and math.isfinite(limit_w) and limit_w > 0:
        return LIMIT_OVERSHOOT * limit_w
    return MAX_GPU_POWER_W


def invalid(value: float | None) -> bool:
    """No reading at all: not a number, infinite or negative (None, a field the GPU lacks, is fine)."""
    return value is not None and not (math.isfinite(value) and value >= 0)


@dataclass
class CounterStep:
    """What one counter reading decided: readings kept (in time order) and readings dropped."""

    # (t_ns, stitched joules, what happened just before it: None, "reset" or "jump")
    kept: list[tuple[int, float, str | None]] = field(default_factory=list)
    # (t_ns, why): "invalid", "implausible" (above what the GPU could count), "glitch" (a lone drop),
    # "unconfirmed" (a drop with no later reading to tell a reset from a bad read)
    dropped: list[tuple[int, str]] = field(default_factory=list)


class CounterRule:
    """Raw readings of one cumulative energy counter in, a stitched non-decreasing series out.

    A reading that disagrees with the last good one (lower, or higher than the GPU could have counted
    since) is held as a *suspect*, and the next reading decides:
    - it agrees with the last good reading: the suspect was a bad read (one 0 between two consistent
      readings) and is dropped: a "glitch" below, "implausible" above;
    - it rises from the suspect (as fast as a GPU can): the counter restarted. From near zero (no more
      than the GPU could count since the last good reading) it is a *reset*: what was counted before
      is carried forward. From anywhere else it *jumped* to another level (another process's counter,
      a first reading that was itself bad): the series continues from its last value, so the energy
      between the two readings is missing rather than counted twice;
    - neither: the suspect is dropped and the new reading judged afresh (it may be the next suspect).
    `finish()` drops a suspect still undecided when the readings end: an unconfirmed drop is never
    taken for a reset, which would count the whole counter again (at most the tail is lost).

    `limit_w` is the fastest the counter can rise (W of counter time). With `strict` False (readers,
    which know no power limit and may read a sped-up simulation) it only sets what "near zero" means:
    any rise is consistent.
    """

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        self._last: tuple[int, float] | None = None  # (t_ns, raw joules) of the last good reading
        self._suspect: tuple[int, float] | None = None
        self._offset = 0.0

    def push(self, t_ns: int, raw_j: float, limit_w: float) -> CounterStep:
        step = CounterStep()
        if invalid(raw_j):
            step.dropped.append((t_ns, "invalid"))
        else:
            self._judge(t_ns, raw_j, limit_w, step)
        return step

    def finish(self) -> CounterStep:
        """The end of the readings: a pending drop is dropped as "unconfirmed" (or "implausible")."""
        step = CounterStep()
        if self._suspect is not None:
            side = self._side(self._suspect[1])
            step.dropped.append((self._suspect[0], "unconfirmed" if side == "glitch" else side))
            self._suspect = None
        return step

    def _could_count(self, since_ns: int, until_ns: int, limit_w: float) -> float:
        return limit_w * (max(0, until_ns - since_ns) / 1e9 + COUNTER_SLACK_S)

    def _rises(self, since: tuple[int, float], t_ns: int, raw: float, limit_w: float) -> bool:
        """Whether `raw` at `t_ns` follows from the reading `since` (strictly up, and not too fast)."""
        t0, v0 = since
        return raw > v0 and (not self.strict or raw - v0 <= self._could_count(t0, t_ns, limit_w))

    def _side(self, raw: float) -> str:
        assert self._last is not None
        return "glitch" if raw < self._last[1] else "implausible"

    def _keep(self, t_ns: int, raw: float, step: CounterStep, restart: str | None = None) -> None:
        self._last = (t_ns, raw)
        step.kept.append((t_ns, self._offset + raw, restart))

    def _judge(self, t_ns: int, raw: float, limit_w: float, step: CounterStep) -> None:
        last, suspect = self._last, self._suspect
        if last is None:
            self._keep(t_ns, raw, step)
            return
        agrees = raw == last[1] or self._rises(last, t_ns, raw, limit_w)
        if suspect is None:
            if agrees:
                self._keep(t_ns, raw, step)
            else:
                self._suspect = (t_ns, raw)
            return
        self._suspect = None
        if agrees:
            step.dropped.append((suspect[0], self._side(suspect[1])))
            self._keep(t_ns, raw, step)
        elif self._rises(suspect, t_ns, raw, limit_w):
            near_zero = suspect[1] < last[1] and suspect[1] <= self._could_count(last[0], suspect[0], limit_w)
            # A reset carries the old count; a jump carries nothing across, continuing from the last total.
            self._offset += last[1] if near_zero else last[1] - suspect[1]
            self._keep(suspect[0], suspect[1], step, "reset" if near_zero else "jump")
            self._keep(t_ns, raw, step)
        else:
            step.dropped.append((suspect[0], self._side(suspect[1])))
            self._judge(t_ns, raw, limit_w, step)


def parse_gpus(text: str) -> list[int] | None:
    """`--gpus` value: "all" → None (every GPU), "0,2" → [0, 2]."""
    text = text.strip()
    if text.lower() == "all":
        return None
    indices: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise InputError(f"--gpus: expected 'all' or GPU indices like '0,2', got {text!r}")
        if int(part) in indices:
            raise InputError(f"--gpus: GPU {part} is listed twice")
        indices.append(int(part))
    return indices


def check_indices(requested: list[int] | None, available: list[int], what: str) -> list[int]:
    """Validate requested GPU indices against what the backend has; None means all of them."""
    if requested is None:
        return list(available)
    missing = [i for i in requested if i not in available]
    if missing:
        have = ", ".join(map(str, available)) or "none"
        raise InputError(f"--gpus: no GPU {missing[0]} on {what} (it has: {have})")
    return list(requested)
