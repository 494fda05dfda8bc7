"""Number formatting shared by the HTML report and the terminal tables."""

from __future__ import annotations

import math


def fmt_num(value: float | None, unit: str = "", digits: int = 4) -> str:
    """Significant digits, thousands separators for large values, '-' for a missing value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    v = float(value)
    if v == 0:
        return f"0{unit}"
    if abs(v) >= 10 ** (digits - 1):
        return f"{v:,.0f}{unit}"
    if abs(v) < 1e-3:
        return f"{v:.{digits}g}{unit}"
    magnitude = math.floor(math.log10(abs(v)))
    decimals = max(digits - 1 - magnitude, 0)
    return f"{v:.{decimals}f}{unit}"


def fmt_ci(ci: list[float] | None, unit: str = "") -> str:
    if not ci:
        return "-"
    return f"[{fmt_num(ci[0])}, {fmt_num(ci[1])}]{unit}"


def fmt_pct(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:+.1%}"


def fmt_power_lag(record: dict | None) -> str | None:
    """One line on the power series' delay behind the requests and the shift applied (summary.json's
    `power_lag`); None for a summary written before it existed."""
    if not record or not record.get("gpus"):
        return None
    parts = []
    for gpu, lag in record["gpus"].items():
        est = lag.get("estimate_s")
        found = "no estimate" if est is None else f"estimated {est * 1e3:.0f} ms ({lag.get('status')})"
        why = f": {lag['reason']}" if lag.get("reason") else ""
        parts.append(f"gpu {gpu} {found}{why}, applied {lag.get('applied_s', 0.0) * 1e3:.0f} ms")
    return f"power lag ({record.get('setting')}): " + "; ".join(parts)
