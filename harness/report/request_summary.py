"""Per-arm load-generator figures of a request log: what was sent, how on time, how it ended.

`joulebench run` prints this table when no power source was given (nothing to join).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from harness.energy.stats import percentiles
from harness.records import STATUSES


def arm_summary(requests: pd.DataFrame) -> list[dict[str, Any]]:
    """Per arm (in order of appearance; warm-up rows excluded): counts by status, realized send rate,
    lateness and latency percentiles."""
    rows = requests[~requests["warmup"]]
    out = []
    for arm in pd.unique(rows["arm"]):
        part = rows[rows["arm"] == arm]
        sent = part["sent_ns"].dropna().to_numpy(dtype=np.int64)
        lateness = part["lateness_ns"].dropna().to_numpy(dtype=float) / 1e6
        ok = part[part["status"] == "ok"]
        ttft = (ok["first_token_ns"] - ok["sent_ns"]).dropna().to_numpy(dtype=float) / 1e6
        e2e = (ok["done_ns"] - ok["sent_ns"]).dropna().to_numpy(dtype=float) / 1e6
        counts = part["status"].value_counts()
        span = (sent.max() - sent.min()) / 1e9 if len(sent) > 1 else 0.0
        out.append(
            {
                "arm": str(arm),
                "planned": len(part),
                "sent": len(sent),
                "status": {s: int(counts.get(s, 0)) for s in STATUSES if counts.get(s, 0)},
                "rate_per_s": (len(sent) - 1) / span if span > 0 else None,
                "lateness_ms": percentiles(lateness),
                "ttft_ms": percentiles(ttft),
                "e2e_ms": percentiles(e2e),
            }
        )
    return out


def arm_table(summary: list[dict[str, Any]]) -> Table:
    table = Table(title="requests per arm (warm-up excluded)")
    for name in (
        "arm",
        "planned",
        "sent",
        "ok",
        "not ok",
        "rate/s",
        "lateness p50/p99 ms",
        "TTFT p50 ms",
        "E2E p50 ms",
    ):
        table.add_column(name, justify="left" if name == "arm" else "right")
    for arm in summary:
        bad = {k: v for k, v in arm["status"].items() if k != "ok"}
        lateness = arm["lateness_ms"]
        table.add_row(
            arm["arm"],
            str(arm["planned"]),
            str(arm["sent"]),
            str(arm["status"].get("ok", 0)),
            ", ".join(f"{k} {v}" for k, v in bad.items()) or "0",
            f"{arm['rate_per_s']:.2f}" if arm["rate_per_s"] else "-",
            f"{lateness['p50']:.2f} / {lateness['p99']:.2f}" if lateness["n"] else "-",
            f"{arm['ttft_ms']['p50']:.1f}" if arm["ttft_ms"]["n"] else "-",
            f"{arm['e2e_ms']['p50']:.1f}" if arm["e2e_ms"]["n"] else "-",
        )
    return table
