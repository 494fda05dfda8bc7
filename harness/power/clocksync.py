"""Clock offset between this process and a sidecar on another host, from the sidecar's `/time` endpoint.

NTP-style: for each probe, read our monotonic clock before (m0) and after (m1) the request; the
sidecar's reading was taken somewhere in between, best guessed at the midpoint, with an error of at
most half the round trip. The probe with the shortest round trip wins. Monotonic-to-monotonic is
what readers need (sample times are sidecar-monotonic); the epoch offset is kept too, for sources that
only have epoch times (Prometheus).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import httpx

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.power.http_problem import http_problem


@dataclass(frozen=True)
class ClockOffset:
    mono_offset_ns: int  # our monotonic - the sidecar's monotonic, at the same instant
    epoch_offset_ns: int  # our epoch - the sidecar's epoch
    rtt_ns: int  # round trip of the best probe; the offsets are good to within rtt_ns / 2
    remote_boot_id: str
    same_kernel: bool  # same boot_id: the monotonic clocks are one clock (offset exactly 0)

    def as_dict(self) -> dict:
        """For `PowerData.clock`: the offsets, and `uncertainty_ns` (half the round trip)."""
        return {**asdict(self), "uncertainty_ns": self.rtt_ns // 2}


def estimate_clock_offset(
    base_url: str,
    anchor: ClockAnchor | None = None,
    probes: int = 8,
    client: httpx.Client | None = None,
) -> ClockOffset:
    """Probe `{base_url}/time`; `anchor` maps our monotonic clock to epoch (default: a fresh one)."""
    anchor = anchor or ClockAnchor.now()
    url = base_url.rstrip("/") + "/time"
    own = client or httpx.Client(timeout=5.0)
    best: tuple[int, int, int, str] | None = None  # rtt, mono offset, epoch offset, boot id
    try:
        own.get(url)  # the first request pays for the connection; keep it out of the estimate
        for _ in range(probes):
            m0 = time.monotonic_ns()
            response = own.get(url)
            m1 = time.monotonic_ns()
            response.raise_for_status()
            remote = response.json()
            mid = (m0 + m1) // 2
            probe = (m1 - m0, mid - int(remote["mono_ns"]), anchor.to_epoch_ns(mid) - int(remote["epoch_ns"]))
            if best is None or probe[0] < best[0]:
                best = (*probe, str(remote.get("boot_id", "")))
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{url}: cannot read the sidecar's clock ({http_problem(exc)})") from None
    finally:
        if client is None:
            own.close()
    assert best is not None
    rtt, mono_offset, epoch_offset, remote_boot = best
    same = bool(remote_boot) and remote_boot == anchor.boot_id
    return ClockOffset(
        mono_offset_ns=0 if same else mono_offset,
        epoch_offset_ns=epoch_offset,
        rtt_ns=rtt,
        remote_boot_id=remote_boot,
        same_kernel=same,
    )
