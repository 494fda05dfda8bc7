"""benchmarks/wire_lateness.py: the runner's dispatch and wire stamps against the arrival server's own
(the truth). Medians over repeats on hand-made points, a tiny run end to end, and the committed run
(benchmarks/results/wire), whose table is rebuilt from its raw points and quoted by the README."""

from __future__ import annotations

import json
import sys

import pytest
from joulebench_testkit import REPO, run_benchmark

sys.path[:0] = [str(REPO / "benchmarks")]

from wire_lateness import SERIES, medians, table  # noqa: E402

COMMITTED = REPO / "benchmarks" / "results" / "wire"


def _point(wire_p99: float, transport: str = "aiohttp", ok: int = 100, first: bool = True) -> dict:
    ms = {s: {"p50": 0.1, "p99": wire_p99 + i, "max": 9.0} for i, s in enumerate(SERIES)}
    return {"transport": transport, "workers": 1, "rate": 100.0, "requests": 100, "ok": ok,
            "wire_before_server": first, "ms": ms, "client_cpu_share": 0.1}  # fmt: skip


def test_medians_per_transport_and_rate_with_the_p99_range() -> None:
    one, two = medians([_point(1.0), _point(3.0), _point(2.0, ok=99), _point(5.0, "httpx", first=False)])
    assert (one["transport"], one["runs"], two["runs"]) == ("aiohttp", 3, 1)
    assert one["ms"]["wire"]["p99"] == 3.0 and one["p99_range"]["wire"] == [2.0, 4.0]
    assert one["all_ok"] is False and two["all_ok"] is True  # a failed request is said
    assert (one["wire_first_runs"], two["wire_first_runs"]) == (3, 0)
    row = table([one, two]).splitlines()[2]
    assert row.startswith("| aiohttp | 100 | 3 | 0.10 / 2.00 (1.00–3.00) | 0.10 / 3.00 (2.00–4.00) |")
    assert row.endswith("| 3 of 3 |") and table([two]).endswith("| 0 of 1 |")


@pytest.mark.slow
def test_a_tiny_run_against_the_arrival_server(tmp_path) -> None:
    result = run_benchmark(
        "wire_lateness.py", "--rates", "50", "--duration", "1", "--repeats", "1", "--transports", "aiohttp",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads((tmp_path / "wire_lateness.json").read_text())
    (point,) = doc["points"]
    # The wire stamp comes after dispatch and before the server has the request.
    assert point["ok"] == point["requests"] and point["wire_before_server"]
    assert point["ms"]["dispatch"]["p50"] <= point["ms"]["wire"]["p50"] <= point["ms"]["server"]["p50"]
    assert (tmp_path / "wire_lateness.md").read_text() == table(doc["medians"]) + "\n"


def test_the_committed_run_is_its_raw_points_and_the_readme_quotes_it() -> None:
    doc = json.loads((COMMITTED / "wire_lateness.json").read_text())
    assert medians(doc["points"]) == doc["medians"]
    assert all(r["runs"] >= 3 and r["all_ok"] for r in doc["medians"])
    # The default transport stamps just before its synchronous write: never after the server has it.
    assert all(r["wire_first_runs"] == r["runs"] for r in doc["medians"] if r["transport"] == "aiohttp")
    text = table(doc["medians"])
    assert (COMMITTED / "wire_lateness.md").read_text() == text + "\n"
    readme = (REPO / "README.md").read_text()
    for line in text.splitlines()[2:]:
        assert line in readme, line
