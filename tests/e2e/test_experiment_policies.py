"""A policy sweep as an experiment on the embedded mock: `plan.policies` makes the arms, the cells record
what users paid, and the report finds the energy-latency front. Real processes, real HTTP.

Two policies on the same Poisson users (8 requests/s, 12 each): passthrough, and a window that holds
every request up to 0.5 s and releases them together, so the window's users wait and its requests share
batches. Two repeats, goodput under a 0.3 s TTFT SLO, which the window's tail misses.
"""

from __future__ import annotations

import pytest
from joulebench_testkit import run_main

from harness.runfolder.experiment_files import ExperimentFolder

pytestmark = pytest.mark.slow

SWEEP = """\
name: policies
target: embedded
plan:
  prompts: synthetic
  n: 12
  max_tokens: 16
  ignore_eos: true
  policies: [passthrough, "window:period=0.5"]
arms: [poisson]
rates: [8]
repeats: 2
cooldown_s: 0.2
cell_reports: false
slo_ttft_s: 0.3
"""
ARMS = ["poisson+passthrough", "poisson+window-0.5s"]


def test_a_policy_sweep_records_what_users_paid_and_finds_the_front(tmp_path, capsys) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(SWEEP)
    status = run_main(["experiment", "run", str(exp), "-o", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert status == 0, err
    (path,) = (tmp_path / "out").iterdir()
    folder = ExperimentFolder(path)
    cells = folder.read_cells().set_index(["repeat", "arm"])
    assert sorted(set(cells.index.get_level_values("arm"))) == ARMS and set(cells["status"]) == {"done"}
    held, direct = cells.xs(ARMS[1], level="arm"), cells.xs(ARMS[0], level="arm")
    # The window holds (up to its period) and its users see it; passthrough holds nothing.
    assert (held["hold_p99_ms"] > 100).all() and (held["hold_p99_ms"] < 500 + 50).all()
    assert (direct["hold_p99_ms"] < 5).all()
    assert (held["user_ttft_p99_s"] > direct["user_ttft_p99_s"]).all()
    # Goodput: the SLO reached every cell; passthrough meets it, the window's late arrivals do not.
    assert (direct["goodput_share"] == 1).all() and (held["goodput_share"] < 1).all()

    doc = folder.read_summary()
    assert doc["shaped"] and doc["frontier"]["latency"] == "user_ttft_p99_s"
    (block,) = doc["rates"]
    assert set(block["front"]) <= set(ARMS) and "poisson+passthrough" in block["front"]
    for arm in block["arms"]:
        assert arm["on_front"] == (arm["arm"] in block["front"])
        assert arm["figures"]["hold_p99_ms"]["repeats"] == 2
    assert (path / "frontier.png").read_bytes().startswith(b"\x89PNG")
    assert "Energy-latency front" in out + err and "1 arms" not in out + err
