"""The serve target (`target: {serve: vllm, ...}`) with the fake vLLM of tests/harness/deploy/fake_vllm:
started once for the whole experiment, stopped after it, its server.json in the experiment folder.

No power source is given, so the cells measure requests only: every cell is done with its latencies
and no energy (NaN, flagged no_power), and the cool-down is a plain pause between cells.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import time
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from joulebench_testkit import alive, free_port, run_main

from harness.runfolder.experiment_files import ExperimentFolder

pytestmark = pytest.mark.slow

FAKE_VLLM = Path(__file__).resolve().parents[1] / "deploy" / "fake_vllm"
COOLDOWN_S = 0.4


def test_serve_vllm_without_power_runs_requests_only_and_stops_the_server(tmp_path, capsys) -> None:
    port = free_port()
    pid_file = tmp_path / "pids"
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "serve",
        "target": {"serve": "vllm", "model_path": "/models/x", "port": port, "health_timeout_s": 60,
                   "env": {"PYTHONPATH": str(FAKE_VLLM), "FAKE_VLLM_PIDS": str(pid_file)}},
        "power": {},
        "plan": {"prompts": "synthetic", "n": 3, "max_tokens": 4, "ignore_eos": True},
        "arms": ["fixed:interval=0.1,name=fixed", "bursty:size=3,intra=0,gap=1,name=bursty"],
        "repeats": 2,
        "cooldown_s": COOLDOWN_S,
        "cell_reports": False,
    }))  # fmt: skip
    status = run_main(["experiment", "run", str(exp), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 0, err
    (path,) = (tmp_path / "out").iterdir()
    folder = ExperimentFolder(path)

    cells = folder.read_cells()
    assert len(cells) == 4 and set(cells["status"]) == {"done"}
    assert set(cells["requests"]) == {3} and set(cells["ok"]) == {3}
    assert cells["j_per_request_all_in"].isna().all() and cells["energy_j_total"].isna().all()
    assert all("no_power" in flags.split(",") for flags in cells["flags"])
    assert cells["ttft_p50_s"].notna().all() and (cells["ttft_p50_s"] > 0).all()
    # The cool-down still spaces the cells: without power it is a plain pause between them.
    started = sorted(datetime.fromisoformat(s).timestamp() for s in cells["started_utc"])
    assert min(b - a for a, b in itertools.pairwise(started)) >= COOLDOWN_S

    # One server for the whole experiment, stopped after it: no process of it is left.
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids), f"server processes left running: {pids}"
    info = json.loads((path / "server" / "server.json").read_text())
    assert info["kind"] == "vllm" and info["launcher"] == "native" and info["pid"] == pids[0]
    assert info["flags"]["--model"] == "/models/x" and info["flags"]["--port"] == str(port)
    assert info["exit_code"] == 0 and info["stop"] == "stopped"
    assert "fake vLLM: model=/models/x" in (path / "server" / "server.log").read_text()
    assert err.count("server healthy after") == 1
    # Every cell's manifest records that server, by its server.json.
    for run_dir in cells["run_dir"]:
        server = json.loads((path / run_dir / "manifest.json").read_text())["server"]
        assert server["info_file"] == str(path / "server" / "server.json") and server["pid"] == pids[0]
    resolved = folder.spec_data()
    assert resolved["target"]["kind"] == "serve" and resolved["cooldown_s"] == COOLDOWN_S
    assert (path / "report.html").is_file() and folder.read_summary()["counts"]["done"] == 4


def test_serve_transformers_target_names_its_model_and_stops_it(tmp_path, monkeypatch, capsys) -> None:
    """transformers serves only the model it preloaded, by that name, and its /v1/models cannot say
    which (it lists the Hugging Face cache; the stand-in answers 500 as it does without one)."""
    fake = _load_fake_transformers()
    program, env = fake.fake_transformers(tmp_path)
    monkeypatch.setenv("PATH", f"{program.parent}{os.pathsep}{os.environ['PATH']}")
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "tf",
        "target": {"serve": "transformers", "model_path": "/models/tf", "port": free_port(),
                   "args": ["--dtype", "bfloat16"], "env": env, "health_timeout_s": 60},
        "power": {},
        "plan": {"prompts": "synthetic", "n": 2, "max_tokens": 4},
        "arms": ["fixed:interval=0.1,name=fixed"],
        "repeats": 1,
        "cooldown_s": 0,
        "cell_reports": False,
    }))  # fmt: skip
    status = run_main(["experiment", "run", str(exp), "-o", str(tmp_path / "out")])
    assert status == 0, capsys.readouterr().err
    (path,) = (tmp_path / "out").iterdir()
    cells = ExperimentFolder(path).read_cells()
    assert list(cells["ok"]) == [2]  # the requests named /models/tf, the only model it serves
    info = json.loads((path / "server" / "server.json").read_text())
    assert info["kind"] == "transformers" and info["flags"]["_positional"] == ["/models/tf"]
    assert info["flags"]["--continuous-batching"] is True and info["stop"] == "stopped"
    assert info["version"] == "5.17.0"
    assert "cb=True flags=['--dtype', 'bfloat16']" in (path / "server" / "server.log").read_text()


def _load_fake_transformers() -> ModuleType:
    path = FAKE_VLLM.parent / "fake_transformers.py"
    loaded = importlib.util.spec_from_file_location("fake_transformers", path)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module
