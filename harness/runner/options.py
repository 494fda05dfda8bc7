"""How a plan is executed (everything but the plan and the target), validated in one place.

A field made with `flag` (foundation/flag_fields.py) is a flag of `joulebench run`, declared here next
to its default; FLAG_PANEL is the help panel of those flags.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from foundation.errors import InputError
from foundation.flag_fields import check_choice, flag
from harness.backends.client import Transport
from harness.records import Shard

# The transports, and "auto": the runner's choice of one for each run (transport_choice.py).
TransportSetting = Literal["auto", Transport]


@dataclass(frozen=True)
class RunOptions:
    FLAG_PANEL: ClassVar[str] = "Run"

    stream: bool = flag(
        True, "--stream/--no-stream", "Streaming responses (per-chunk times, TTFT) or whole responses."
    )
    max_concurrency: int | None = flag(
        None,
        "--max-concurrency <int>",
        "Client-side cap on requests in flight; the wait is logged as queued_ns "
        "(default: no cap, pure open loop).",
    )
    max_rate: float | None = flag(  # enforced with asyncio-throttle
        None,
        "--max-rate REQ/S",
        "Guard: never more than this many requests per second "
        "(floor(R) per 1 s window); the wait is logged as queued_ns.",
    )
    max_in_flight: int | None = flag(
        None,
        "--max-in-flight <int>",
        "Brake: when this many requests are in flight, a due request waits until one ends (its wait "
        "counts as lateness and is logged as capped_ns); an arm that waited is flagged in_flight_capped, "
        "an error. Unlike --max-concurrency, a safety limit, not a load shape (default: none).",
    )
    max_loop_lag_ms: float | None = flag(
        None,
        "--max-loop-lag-ms MS",
        "Bound on each arm's p99 event-loop lag (the runner's own probe, every 10 ms); above it the arm "
        "is flagged loop_lag_over_bound, an error (default: 20 ms).",
    )
    warmup: int = flag(
        1,
        "--warmup <int>",
        "Requests sent one at a time before the plan (the plan's first prompts), logged "
        "with warmup=true and negative ids, excluded from results.",
    )
    time_limit_s: float | None = flag(
        None,
        "--time-limit SECONDS",
        "Stop sending this long after the measured start; requests not sent by then are logged not_sent.",
    )
    timeout_s: float = flag(
        300.0,
        "--timeout SECONDS",
        "Per-request limit from sending (the sender process: the planned time) to the end of the response.",
    )
    grace_s: float = flag(
        30.0,
        "--grace SECONDS",
        "After Ctrl-C, SIGTERM or the time limit: how long requests "
        "in flight may still finish before they are cancelled.",
    )
    arm_gap_s: float = flag(
        0.0, "--arm-gap SECONDS", "Idle time between one arm's last response and the next arm's start."
    )
    shard: Shard = flag(
        Shard(),
        "--shard I/N",
        "Send only this shard's slice of the plan (request_id % N == I) at "
        "the original offsets; merge the shards' folders with `joulebench merge`.",
        parse=Shard.parse,
    )
    start_at_epoch_s: float | None = flag(
        None,
        "--start-at EPOCH_S",
        "Start the measured plan at this epoch time (seconds), "
        "so all shards start together; warm-up happens before it.",
    )
    transport: TransportSetting = flag(
        "auto",
        "--transport",
        "HTTP transport under httpx: auto (sender where it applies, else aiohttp; the manifest's "
        "options.transport_reason says which and why), aiohttp (aiohttp's connection pool), httpx "
        "(httpcore), or sender (joulebench's own HTTP/1.1 connections, http:// only: a process writes "
        "each open-loop request at its time, so response parsing cannot delay it). See docs/runner.md.",
    )
    workers: int = flag(
        1,
        "--workers <int>",
        "Processes that send the plan, each with its own event loop and connections: open-loop arms are "
        "dealt round-robin over them, on the plan's deadlines; closed-loop and shaped arms run whole in "
        "one. More than 1 keeps response parsing from delaying sends (docs/runner.md). Default 1.",
    )
    progress: bool = flag(True, "--progress/--no-progress", "Live progress display on stderr.")
    # Not a flag: the load generator's fidelity benchmark turns the precise timer off to measure what it buys.
    precise_timer: bool = field(default=True, metadata={"flag": None})
    # Not a flag: why `--transport auto` took the transport it did (harness/runner/transport_choice.py).
    transport_reason: str | None = field(default=None, metadata={"flag": None})

    def validate(self) -> RunOptions:
        positive = {
            "--max-rate": self.max_rate,
            "--time-limit": self.time_limit_s,
            "--timeout": self.timeout_s,
            "--max-loop-lag-ms": self.max_loop_lag_ms,
        }
        for name, value in positive.items():
            if value is not None and not value > 0:
                raise InputError(f"{name}: must be > 0 (got {value})")
        for name, value in {"--grace": self.grace_s, "--arm-gap": self.arm_gap_s}.items():
            if not value >= 0:
                raise InputError(f"{name}: must be >= 0 (got {value})")
        caps = {"--max-concurrency": self.max_concurrency, "--max-in-flight": self.max_in_flight}
        for name, cap in caps.items():
            if cap is not None and cap < 1:
                raise InputError(f"{name}: must be >= 1 (got {cap})")
        if self.workers < 1:
            raise InputError(f"--workers: must be >= 1 (got {self.workers})")
        if self.workers > 1:
            guards: dict[str, float | None] = {**caps, "--max-rate": self.max_rate}
            for name, guard in guards.items():
                if guard is not None:  # each process would hold a cap of its own: K caps, not one
                    raise InputError(f"--workers {self.workers}: not with {name} (a cap is of one process)")
        if self.transport == "sender":
            guards = {**caps, "--max-rate": self.max_rate}
            for name, guard in guards.items():
                if guard is not None:  # a request waiting for the cap cannot be written at its time
                    raise InputError(f"--transport sender: not with {name} (requests go at their time)")
        if self.warmup < 0:
            raise InputError(f"--warmup: must be >= 0 (got {self.warmup})")
        check_choice("--transport", self.transport, TransportSetting)
        start = self.start_at_epoch_s
        if start is not None:
            if not math.isfinite(start):
                raise InputError(f"--start-at {start}: expected epoch seconds, a finite number")
            now = time.time()
            if start > 1e11:
                raise InputError(f"--start-at {start:g}: expected epoch seconds, not milliseconds")
            if start < now:
                late = now - start
                raise InputError(f"--start-at {start:g}: is {late:.1f} s in the past")
            if start > now + 7 * 86400:
                raise InputError(f"--start-at {start:g}: is more than a week ahead")
        return self

    def check_shaped(self, arm: str) -> None:
        """A shaped arm's hold is sent − arrived: a client-side cap or rate guard would add a wait the
        policy did not cause to it, so neither is allowed with one (the policy decides when requests go)."""
        guards = {
            "--max-concurrency": self.max_concurrency,
            "--max-rate": self.max_rate,
            "--max-in-flight": self.max_in_flight,
        }
        for name, value in guards.items():
            if value is not None:
                raise InputError(
                    f"{name}: not with --policy arms (arm {arm!r}: the policy decides when requests go)"
                )

    def as_manifest(self) -> dict[str, Any]:
        data = asdict(self)
        data["shard"] = str(self.shard)
        return data
