"""The per-GPU table of the terminal summary: each attributed GPU's energy, and the host's others apart."""

from __future__ import annotations

from harness.report.format import fmt_num

# (heading, drop: 0 always shown, else left out first where the table does not fit, highest first; text)
GPU_COLUMNS = [
    ("GPU", 0, True), ("role", 0, True), ("J", 0, False), ("attributed J", 2, False), ("mean W", 0, False),
    ("share", 1, False), ("samples", 3, False), ("failed reads", 0, False),
]  # fmt: skip
GpuRow = tuple[list[str], str | None]  # cells, style


def gpu_rows(summary: dict) -> list[GpuRow] | None:
    """None for one GPU with nothing to say (the energy line says it all), and for older summaries."""
    power = summary.get("power") or {}
    gpus = [g for g in power.get("gpus") or [] if "energy_j" in g]
    others = (power.get("host") or {}).get("unattributed") or []
    if not gpus or (len(gpus) == 1 and not others and not gpus[0].get("failed_reads")):
        return None
    rows: list[GpuRow] = []
    for g in gpus:
        share, failed = g.get("share"), g.get("failed_reads")
        cells = [
            g["gpu"], "attributed", fmt_num(g.get("energy_j")), fmt_num(g.get("attributed_j")),
            fmt_num(g.get("mean_power_w")), "-" if share is None else f"{share:.1%}", f"{g['samples']:,}",
            "-" if failed is None else f"{failed:,}",
        ]  # fmt: skip
        rows.append((cells, "red" if failed else None))
    for o in others:
        cells = [
            o["gpu"], "not selected", fmt_num(o.get("energy_j")), "0", fmt_num(o.get("mean_power_w")), "-",
            f"{o['samples']:,}", f"{o['failed_reads']:,}",
        ]  # fmt: skip
        rows.append((cells, "dim"))
    return rows
