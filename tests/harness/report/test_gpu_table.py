"""The terminal's per-GPU table (harness/report/gpu_table.py): shown for several GPUs or a failed read,
not for one healthy GPU or an older summary, and never with a figure cut at 80 columns."""

from __future__ import annotations

import io

from rich.console import Console

from harness.report.gpu_table import gpu_rows
from harness.report.terminal import render_terminal_summary


def _gpu(gpu: str, energy: float, failed: int = 0) -> dict:
    return {"gpu": gpu, "energy_j": energy, "attributed_j": energy * 0.97, "unattributed_j": energy * 0.03,
            "mean_power_w": energy / 4.2, "share": 0.5, "samples": 1234, "failed_reads": failed}  # fmt: skip


def _idle(gpu: str) -> dict:
    return {"gpu": gpu, "energy_j": 503.25, "mean_power_w": 119.82, "samples": 42, "failed_reads": 0}


def test_rows_only_where_there_is_more_than_one_gpu_to_tell_apart() -> None:
    assert gpu_rows({"power": {"gpus": [{"gpu": "0", "samples": 3}]}}) is None  # an older summary
    assert gpu_rows({"power": {"gpus": [_gpu("0", 700.0)]}}) is None
    assert gpu_rows({"power": {"gpus": [_gpu("0", 700.0, failed=3)]}}) is not None
    rows = gpu_rows(
        {"power": {"gpus": [_gpu("0", 700.0), _gpu("1", 690.0)], "host": {"unattributed": [_idle("2")]}}}
    )
    assert rows is not None and [r[0][1] for r in rows] == ["attributed", "attributed", "not selected"]


def test_the_table_fits_80_columns_without_cutting_a_figure(monkeypatch) -> None:
    import harness.report.terminal as terminal

    monkeypatch.setattr(terminal, "cheapest_arm", lambda summary: None)
    monkeypatch.setattr(terminal, "users_table", lambda summary: None)
    block = {"name": "run", "requests": {"ok": 1, "total": 1}}
    summary = {
        "method": "time", "arms": [], "run": block, "flags": [],
        "conservation": {"total_j": 1.0, "attributed_j": 1.0, "unattributed_j": 0.0}, "idle": {},
        "power": {"gpus": [_gpu("0", 71234.5), _gpu("1", 70123.25, failed=12)],
                  "host": {"unattributed": [_idle(str(i)) for i in range(2, 8)]}},
    }  # fmt: skip
    out = io.StringIO()
    render_terminal_summary(summary, Console(file=out, width=80, force_terminal=False))
    text = out.getvalue()
    assert "energy per GPU over the run" in text and "…" not in text
    assert "71,234" in text and "not selected" in text and text.count("503.2") == 6
