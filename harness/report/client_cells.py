"""The report page's cells for how the load generator kept up: lateness with what it is measured at,
requests in flight and held at --max-in-flight, the runner's event-loop lag and CPU share."""

from __future__ import annotations

from typing import Any

from harness.energy.figures import LATENESS_AT
from harness.report.format import fmt_num


def client_cell(v: dict[str, Any], kind: str) -> str:
    """`late_at`: a `Lateness` (p50 / p99 / max, and where it was measured); `in_flight`, `client`: a
    `ClientLoad`'s in-flight counts and holds, or its loop lag and CPU share."""
    if kind == "late_at":
        figures = " / ".join(fmt_num(v.get(k), digits=3) for k in ("p50", "p99", "max"))
        at = LATENESS_AT.get(v.get("at") or "")
        return f"{figures} ({at})" if at else figures
    if kind == "in_flight":
        held = v.get("capped") or 0
        counts = f"{fmt_num(v.get('in_flight_p99'), digits=3)} / {fmt_num(v.get('in_flight_max'))}"
        return counts + (f"; {held} held: CAPPED" if held else "; none held")
    lag = v.get("loop_lag_ms") or {}
    bound = v.get("loop_lag_bound_ms")
    over = lag.get("p99") is not None and bound is not None and lag["p99"] > bound
    share = v.get("cpu_share")
    return (
        f"{fmt_num(lag.get('p99'), digits=3)} / {fmt_num(lag.get('max'), digits=3)}"
        + (f" (bound {bound:g}): EXCEEDED" if over else "")
        + f"; {'-' if share is None else f'{share:.0%}'}"
    )
