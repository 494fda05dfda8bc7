"""Flags for a load generator that could not carry its load: held at `--max-in-flight`, an event loop
that lagged, a CPU that was saturated.

The in-flight counts and holds come from the request log (`figures.client_load`); the loop's lag and the
CPU share only the runner saw, so it writes them into the manifest's `arms` (`client`), and
`add_runner_figures` puts them into the summary's arm blocks after the join, with their flags. An arm
held at the cap did not offer the plan's load: an error, so `--strict` fails; so is a loop that lagged
beyond a `--max-loop-lag-ms` the user gave. Beyond the default bound it is a warning, as is a saturated
CPU: the lateness flag (sends behind the plan) says whether it mattered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.energy.figures import ClientLoad, DispatchLateness
from harness.energy.flags import (
    CLIENT_CPU_SATURATED,
    IN_FLIGHT_CAPPED,
    LOOP_LAG_OVER_BOUND,
    Flag,
    FlagList,
)
from harness.energy.summary_types import Block, Summary

# The default bound on an arm's p99 loop lag (ms): the lateness floor (figures.LATENESS_FLOOR_MS). A
# loop that wakes this late delays every send due meanwhile by as much, whatever the schedule.
LOOP_LAG_BOUND_MS = 20.0
# The runner's CPU time over an arm's wall time above which it is flagged: one core, nearly all taken.
CPU_SHARE_WARN = 0.9


def flag_capped(client: ClientLoad, flags: FlagList, scope: str) -> None:
    """The `in_flight_capped` error when requests of the arm waited at `--max-in-flight`."""
    n = client["capped"]
    if n:
        flags.add(
            IN_FLIGHT_CAPPED,
            "error",
            f"{n} requests waited at --max-in-flight before they were sent (the longest "
            f"{client['capped_ms_max']:.1f} ms; at most {client['in_flight_max']} in flight): the client "
            "fell behind and the cap held the load back, so the offered load was not the plan's",
            scope,
        )


def add_runner_figures(summary: Summary, flags: list[Flag], manifest: Mapping[str, Any]) -> None:
    """Fill each arm block's `client` with the runner's figures from `manifest` (its `arms[].client` and
    `options.max_loop_lag_ms`), adding their flags to `flags`, the blocks and the summary's list. A run
    without them (older, or merged shards) keeps None there."""
    options = manifest.get("options") or {}
    explicit = options.get("max_loop_lag_ms")
    bound = explicit or LOOP_LAG_BOUND_MS
    runner = {a.get("name"): a.get("client") for a in manifest.get("arms") or [] if isinstance(a, dict)}
    added = FlagList()
    for block in summary["arms"]:
        figures = runner.get(block["name"])
        if not isinstance(figures, dict):
            continue
        client = block["client"]
        lag: DispatchLateness | None = figures.get("loop_lag_ms")
        client["loop_lag_ms"] = lag
        client["loop_lag_bound_ms"] = float(bound)
        client["cpu_share"] = figures.get("cpu_share")
        _flag_runner(client, added, block, explicit is not None)
    flags.extend(added)
    summary["flags"].extend(f.as_dict() for f in added)
    summary["run"]["flags"] = sorted({*summary["run"]["flags"], *(f.code for f in added)})


def _flag_runner(client: ClientLoad, added: FlagList, block: Block, explicit: bool) -> None:
    name, before = block["name"], len(added)
    lag, bound = client["loop_lag_ms"], client["loop_lag_bound_ms"]
    p99 = None if lag is None else lag["p99"]
    if lag is not None and p99 is not None and bound is not None and p99 > bound:
        # The default bound is a warning: a busy host's loop lags now and then, and the lateness flag
        # says whether sends fell behind. A bound the user set is theirs to fail --strict on.
        added.add(
            LOOP_LAG_OVER_BOUND,
            "error" if explicit else "warning",
            f"the runner's event loop woke up to {lag['max'] or p99:.1f} ms late (p99 {p99:.1f} ms, the "
            f"bound {bound:g} ms, --max-loop-lag-ms): every send due meanwhile waited as long"
            + (", so the offered load was not the plan's" if explicit else " (see the lateness figures)"),
            name,
        )
    share = client["cpu_share"]
    if share is not None and share >= CPU_SHARE_WARN:
        added.add(
            CLIENT_CPU_SATURATED,
            "warning",
            f"the runner used {share:.0%} of a CPU core during this arm: the load generator was near its "
            "limit (see the lateness and loop-lag figures)",
            name,
        )
    block["flags"] = sorted({*block["flags"], *(f.code for f in added[before:])})
