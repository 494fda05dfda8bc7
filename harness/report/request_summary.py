"""Per-arm load-generator figures of a request log: what was sent, how on time, how it ended.

`joulebench run` prints this table when no power source was given (nothing to join). An open-loop arm's
p99 lateness is held to the same bound as in the energy summary (docs/energy.md, "Lateness").
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import pandas as pd

from harness.energy.figures import (
    Codes,
    DispatchLateness,
    LatenessBound,
    RequestTimes,
    arm_lateness_bound,
    client_load,
    lateness_ms,
)
from harness.energy.stats import percentiles
from harness.records import STATUSES
from harness.report.terminal import Column, FittedTable


def arm_summary(
    requests: pd.DataFrame,
    closed_loop: Collection[str] = (),
    max_lateness_ms: float | None = None,
    loop_lag: Mapping[str, DispatchLateness | None] | None = None,
    max_loop_lag_ms: float | None = None,
) -> list[dict[str, Any]]:
    """Per arm (in order of appearance; warm-up rows excluded): counts by status, realized rate (of the
    offers to the server: an unshaped arm's wire times where the log has them, else its users'
    arrivals), lateness (at the wire, as in the energy summary: `figures.lateness_ms`) and latency
    percentiles, the lateness bound of an open-loop arm (`max_lateness_ms`, else from its planned gaps)
    with whether its p99 exceeds it (`late`), and the error flags the energy summary would raise
    without power (`errors`: lateness_over_bound, client_errors, in_flight_capped and, from the runner's
    `loop_lag` per arm against `max_loop_lag_ms`, loop_lag_over_bound)."""
    rows = requests[~requests["warmup"]].reset_index(drop=True)
    times = RequestTimes.of(rows)
    arm_codes = Codes.of(rows["arm"])
    out = []
    for arm in pd.unique(rows["arm"]):
        mine = arm_codes.eq(str(arm))
        part = rows[mine]
        offered = np.sort(times.offered[mine & times.has_offered])
        ok = part[part["status"] == "ok"]
        ttft = (ok["first_token_ns"] - ok["sent_ns"]).dropna().to_numpy(dtype=float) / 1e6
        e2e = (ok["done_ns"] - ok["sent_ns"]).dropna().to_numpy(dtype=float) / 1e6
        counts = part["status"].value_counts()
        span = (offered[-1] - offered[0]) / 1e9 if len(offered) > 1 else 0.0
        bound = _bound(part, str(arm) in closed_loop, max_lateness_ms)
        late = lateness_ms(times, mine, bound)
        over = bound is not None and late["p99"] is not None and late["p99"] > bound.ms
        capped = client_load(times, mine)["capped"]
        lag = (loop_lag or {}).get(str(arm))
        # An error only against a bound the user gave (client_load.py says why).
        p99 = None if lag is None else lag["p99"]
        lagged = max_loop_lag_ms is not None and p99 is not None and p99 > max_loop_lag_ms
        raised = (
            ("lateness_over_bound", over),
            ("client_errors", "client_error" in counts),
            ("in_flight_capped", capped > 0),
            ("loop_lag_over_bound", lagged),
        )
        out.append(
            {
                "arm": str(arm),
                "planned": len(part),
                "sent": int(part["sent_ns"].notna().sum()),
                "status": {s: int(counts.get(s, 0)) for s in STATUSES if counts.get(s, 0)},
                "rate_per_s": (len(offered) - 1) / span if span > 0 else None,
                "lateness_ms": late,
                "lateness_bound_ms": None if bound is None else bound.ms,
                "late": over,
                "capped": capped,
                "loop_lag_ms": lag,
                "errors": [code for code, on in raised if on],
                "ttft_ms": percentiles(ttft),
                "e2e_ms": percentiles(e2e),
            }
        )
    return out


def _bound(part: pd.DataFrame, closed_loop: bool, max_lateness_ms: float | None) -> LatenessBound | None:
    if closed_loop:
        return None
    return arm_lateness_bound(part["planned_ns"].dropna().to_numpy(dtype=np.int64), max_lateness_ms)


# `drop`: the first left out where the table does not fit the terminal. TTFT and E2E never are: they are
# all a run without power measured.
_COLUMNS = [
    Column("arm", text=True), Column("planned", drop=3), Column("sent"), Column("ok"),
    Column("not ok", text=True), Column("rate/s", drop=2), Column("lateness p50/p99 ms"),
    Column("p99 bound ms", drop=1), Column("TTFT p50 ms"), Column("E2E p50 ms"),
]  # fmt: skip


def arm_table(summary: list[dict[str, Any]]) -> FittedTable:
    rows = []
    for arm in summary:
        bad = {k: v for k, v in arm["status"].items() if k != "ok"}
        lateness = arm["lateness_ms"]
        cells = [
            arm["arm"],
            str(arm["planned"]),
            str(arm["sent"]),
            str(arm["status"].get("ok", 0)),
            ", ".join(f"{k} {v}" for k, v in bad.items()) or "0",
            f"{arm['rate_per_s']:.2f}" if arm["rate_per_s"] else "-",
            f"{lateness['p50']:.2f} / {lateness['p99']:.2f}" if lateness["n"] else "-",
            "-"
            if arm["lateness_bound_ms"] is None
            else f"{arm['lateness_bound_ms']:.1f}" + (" EXCEEDED" if arm["late"] else ""),
            f"{arm['ttft_ms']['p50']:.1f}" if arm["ttft_ms"]["n"] else "-",
            f"{arm['e2e_ms']['p50']:.1f}" if arm["e2e_ms"]["n"] else "-",
        ]
        rows.append((cells, "red" if arm["late"] else None))
    return FittedTable("requests per arm (warm-up excluded)", _COLUMNS, rows)
