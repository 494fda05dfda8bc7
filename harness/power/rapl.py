"""CPU package and DRAM energy from Linux's powercap interface (Intel/AMD RAPL), beside the GPUs'.

Where the host exposes it, `/sys/class/powercap/intel-rapl:*` holds one folder per zone: `name`
("package-0", "dram", "core", "psys", ...), `energy_uj` (a cumulative counter in µJ that wraps at
`max_energy_range_uj`). The sidecar samples the package and DRAM zones at its counter period into the
sample log as host energy rows (samplelog.py), stitching each wrap by adding the range: a package
zone wraps after ~262 kJ, minutes at full load, so reading every 0.5 s never misses one. These are
extra channels: never mixed into the GPUs' energy or a request's.

Often absent (no powercap in containers or VMs) or unreadable (since Linux 5.10 `energy_uj` is
readable by root only): `discover` says why, and the sidecar's header and the run's summary carry it.
`JOULEBENCH_POWERCAP_ROOT` replaces `/sys/class/powercap` (tests use a fake tree of the same layout).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.power.samplelog import SampleRing

log = logging.getLogger(__name__)

POWERCAP_ROOT = Path("/sys/class/powercap")
ROOT_ENV = "JOULEBENCH_POWERCAP_ROOT"
KINDS = ("package", "dram")  # the zones sampled; core/uncore lie inside package, psys spans the platform


def powercap_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or POWERCAP_ROOT)


@dataclass(frozen=True)
class RaplDomain:
    index: int  # the `gpu` column of its host energy rows
    zone: str  # "intel-rapl:0", "intel-rapl:0:0", ...
    name: str  # the zone's own name ("package-0", "dram")
    kind: str  # "package" or "dram"
    max_range_uj: int
    path: Path

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "zone": self.zone, "name": self.name, "kind": self.kind,
                "max_energy_range_j": self.max_range_uj / 1e6}  # fmt: skip

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


def _kind(name: str) -> str | None:
    return next((k for k in KINDS if name.startswith(k)), None)


def discover(root: Path | None = None) -> tuple[list[RaplDomain], str | None]:
    """The package and DRAM zones under `root` that can be read now, and why there are none (None when
    there are some)."""
    root = root or powercap_root()
    if not root.is_dir():
        return [], f"no {root}: this host does not expose RAPL through powercap"
    domains: list[RaplDomain] = []
    problems: list[str] = []
    for zone in sorted(root.glob("intel-rapl:*")):
        try:
            name = (zone / "name").read_text().strip()
            kind = _kind(name)
            if kind is None:
                continue
            max_range = int((zone / "max_energy_range_uj").read_text().strip())
            domain = RaplDomain(len(domains), zone.name, name, kind, max_range, zone)
            domain.read_uj()
        except (OSError, ValueError) as exc:
            problems.append(f"{zone}: {getattr(exc, 'strerror', None) or exc}")
            continue
        domains.append(domain)
    if domains:
        return domains, None
    if problems:
        return [], f"RAPL zones are not readable ({problems[0]}; energy_uj is root-only since Linux 5.10)"
    return [], f"no package or DRAM zone under {root}"


class WrapCounter:
    """One domain's raw µJ readings in, cumulative joules out: a reading below the last one wrapped."""

    def __init__(self, max_range_uj: int) -> None:
        self.max_range_uj = max_range_uj
        self._last: int | None = None
        self._offset_uj = 0

    def push(self, raw_uj: int) -> float:
        if self._last is not None and raw_uj < self._last:
            self._offset_uj += self.max_range_uj
        self._last = raw_uj
        return (self._offset_uj + raw_uj) / 1e6


class RaplSampler:
    """Reads every domain at `period_s` on its own thread (absolute deadlines) into the ring."""

    def __init__(self, ring: SampleRing, domains: list[RaplDomain], period_s: float) -> None:
        self._ring = ring
        self._domains = domains
        self._counters = [WrapCounter(d.max_range_uj) for d in domains]
        self._period_ns = round(period_s * 1e9)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler-rapl", daemon=True)
        self._failed: set[int] = set()
        self._lock = threading.Lock()
        self._latest: dict[int, float] = {}  # domain index -> cumulative joules (the exposition's)

    def start(self) -> None:
        if self._domains:
            self._thread.start()

    def tick(self) -> None:
        for domain, counter in zip(self._domains, self._counters, strict=True):
            t_ns = time.monotonic_ns()
            try:
                raw = domain.read_uj()
            except (OSError, ValueError) as exc:
                if domain.index not in self._failed:  # once per domain: a lost zone must not flood the log
                    self._failed.add(domain.index)
                    log.warning("RAPL %s read failed: %s", domain.zone, exc)
                continue
            joules = counter.push(raw)
            with self._lock:
                self._latest[domain.index] = joules
            self._ring.append_host_energy(t_ns, domain.index, joules)

    def latest(self) -> list[tuple[RaplDomain, float]]:
        """Each domain read so far with its cumulative joules."""
        with self._lock:
            return [(d, self._latest[d.index]) for d in self._domains if d.index in self._latest]

    def _run(self) -> None:
        start, k = time.monotonic_ns(), 0
        while not self._stop.wait(max(0.0, (start + k * self._period_ns - time.monotonic_ns()) / 1e9)):
            self.tick()
            # Skip deadlines passed while reading rather than reading in a burst.
            k = max(k + 1, (time.monotonic_ns() - start) // self._period_ns + 1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
