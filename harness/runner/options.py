"""How a plan is executed (everything but the plan and the target), validated in one place."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from traffic.errors import InputError

from ..backends.client import TRANSPORTS
from ..records import Shard


@dataclass(frozen=True)
class RunOptions:
    stream: bool = True
    max_concurrency: int | None = None  # client-side cap; the wait shows as queued_ns
    max_rate: float | None = None  # requests/s guard (asyncio-throttle); the wait shows as queued_ns
    warmup: int = 1  # requests sent one at a time before the plan, flagged warmup=True
    time_limit_s: float | None = None  # stop sending this long after the measured start
    timeout_s: float = 300.0  # per request, from sent_ns to the end of the response
    grace_s: float = 30.0  # after a stop: how long in-flight requests may still finish
    arm_gap_s: float = 0.0  # idle time between one arm's last response and the next arm's start
    shard: Shard = field(default_factory=Shard)
    start_at_epoch_s: float | None = None  # the measured start, in epoch seconds (for shards)
    progress: bool = True
    precise_timer: bool = True
    transport: str = "aiohttp"  # or "httpx": see harness.backends.aiohttp_transport

    def validate(self) -> RunOptions:
        positive = {
            "--max-rate": self.max_rate,
            "--time-limit": self.time_limit_s,
            "--timeout": self.timeout_s,
        }
        for flag, value in positive.items():
            if value is not None and not value > 0:
                raise InputError(f"{flag}: must be > 0 (got {value})")
        for flag, value in {"--grace": self.grace_s, "--arm-gap": self.arm_gap_s}.items():
            if not value >= 0:
                raise InputError(f"{flag}: must be >= 0 (got {value})")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise InputError(f"--max-concurrency: must be >= 1 (got {self.max_concurrency})")
        if self.warmup < 0:
            raise InputError(f"--warmup: must be >= 0 (got {self.warmup})")
        if self.transport not in TRANSPORTS:
            raise InputError(f"--transport {self.transport!r}: choose one of {', '.join(TRANSPORTS)}")
        start = self.start_at_epoch_s
        if start is not None:
            now = time.time()
            if start > 1e11:
                raise InputError(f"--start-at {start:g}: expected epoch seconds, not milliseconds")
            if start < now:
                late = now - start
                raise InputError(f"--start-at {start:g}: is {late:.1f} s in the past")
            if start > now + 7 * 86400:
                raise InputError(f"--start-at {start:g}: is more than a week ahead")
        return self

    def as_manifest(self) -> dict[str, Any]:
        data = asdict(self)
        data["shard"] = str(self.shard)
        return data
