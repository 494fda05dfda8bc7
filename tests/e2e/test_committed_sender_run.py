"""docs/results/gpu/sender-transformers-h200: the figures its README quotes, recomputed from the committed
run folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from joulebench_testkit import REPO

FOLDER = REPO / "docs" / "results" / "gpu" / "sender-transformers-h200"


def test_the_page_figures_come_from_the_run() -> None:
    manifest = json.loads((FOLDER / "run" / "manifest.json").read_text())
    assert manifest["options"]["transport"] == "sender"
    rows = pd.read_parquet(FOLDER / "run" / "requests.parquet")
    measured = rows[~rows["warmup"]]
    assert len(measured) == 40 and (measured["status"] == "ok").all()
    assert (measured["output_tokens"] == 64).all() and measured["wire_ns"].notna().all()
    late_ms = (measured["wire_ns"] - measured["planned_ns"]).to_numpy(dtype=np.int64) / 1e6
    e2e_s = (measured["done_ns"] - measured["sent_ns"]).to_numpy(dtype=np.int64) / 1e9
    page = (FOLDER / "README.md").read_text()
    assert f"p50 {np.median(late_ms):.2f} ms, max {late_ms.max():.2f} ms" in page
    assert f"end to end {e2e_s.min():.1f}–{e2e_s.max():.1f} s" in page
