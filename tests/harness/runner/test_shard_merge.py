"""Shards (`--shard I/N --start-at T`) run in parallel processes against one mock, then `joulebench
merge` makes one run folder with exactly one row per planned request, sent on the plan's schedule."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from joulebench_testkit import joulebench_argv, on_another_host, run_dirs, run_joulebench
from runner_helpers import plan_of

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.records import TIME_COLUMNS
from harness.runfolder import RunFolder
from harness.runfolder.requests_file import read_requests
from harness.runfolder.shard_merge import merge_shards
from traffic.plan import save_plan


def run_shards(url: str, tmp_path: Path, plan, count: int) -> tuple[list[Path], float]:
    save_plan(plan, tmp_path / "plan.parquet")
    start_at = time.time() + 12  # room for every process to start (imports are slow on a busy machine)
    common = [
        "run",
        "--target",
        url,
        "--plan",
        "plan.parquet",
        "--start-at",
        f"{start_at:.3f}",
        "--no-progress",
    ]
    processes = [
        subprocess.Popen(
            joulebench_argv(*common, "--out", f"shard{i}", "--shard", f"{i}/{count}"),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    folders = [run_dirs(tmp_path / f"shard{i}")[0] for i in range(count)]
    return folders, start_at


@pytest.fixture(scope="module")
def sharded(fast_mock, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("shards")
    plan = plan_of("fixed:interval=0.01", "bursty:size=6,intra=0.002,gap=0.1", n=60)
    folders, start_at = run_shards(fast_mock.url, tmp_path, plan, 3)
    return plan, folders, start_at, tmp_path


@pytest.mark.slow
def test_shards_send_disjoint_slices_from_a_common_start(sharded) -> None:
    _, folders, start_at, _ = sharded
    for i, path in enumerate(folders):
        folder = RunFolder.open(path)
        rows = folder.requests()
        measured = rows[~rows["warmup"]]
        assert sorted(measured["request_id"]) == [r for r in range(120) if r % 3 == i]
        assert (measured["status"] == "ok").all()
        manifest = folder.manifest()
        assert manifest["shard"]["index"] == i and manifest["shard"]["count"] == 3
        # The first arm starts at the common epoch time, to within the clock anchors' accuracy.
        anchor = ClockAnchor.from_dict(manifest["clock"]["anchor"])
        assert abs(anchor.to_epoch_ns(manifest["run"]["start_ns"]) - start_at * 1e9) < 1e6
        assert np.percentile(measured["lateness_ns"].to_numpy(dtype=float), 50) < 5e6


@pytest.mark.slow
def test_merge_makes_one_run(sharded) -> None:
    plan, folders, _, tmp_path = sharded
    result = run_joulebench("merge", *map(str, folders), "--out", "merged", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    merged = RunFolder.open(tmp_path / result.stdout.strip())
    frame, anchor = read_requests(merged.requests_path)
    measured = frame[~frame["warmup"]]
    assert measured["request_id"].tolist() == list(range(120))  # exactly one row per planned request
    assert sorted(frame.loc[frame["warmup"], "request_id"]) == [-3, -2, -1]  # -(j*N + shard) - 1
    assert (measured["status"] == "ok").all()
    assert merged.plan().header.plan_hash == plan.header.plan_hash

    # On one shared clock the merged sends follow the plan's offsets across shards.
    manifest = merged.manifest()
    assert [a["name"] for a in manifest["arms"]] == ["fixed", "bursty"]
    fixed = measured[measured["arm"] == "fixed"].sort_values("request_id")
    start = manifest["arms"][0]["start_ns"]
    offsets = plan.rows.set_index("request_id").loc[fixed["request_id"], "offset_s"].to_numpy() * 1e9
    assert np.allclose(fixed["planned_ns"].to_numpy(dtype=float) - start, offsets, atol=2e6)
    assert manifest["records"]["rows"] == 120 and manifest["shard"]["merged_from"] == 3
    assert {s["clock_mapping"] for s in manifest["merged_from"]} == {"same kernel"}
    assert anchor == ClockAnchor.from_dict(manifest["clock"]["anchor"])


@pytest.mark.slow
def test_merge_refuses_an_incomplete_or_mixed_set(sharded) -> None:
    _, folders, _, tmp_path = sharded
    with pytest.raises(InputError, match=r"shard\(s\) 1/3 missing"):
        merge_shards([folders[0], folders[2]])
    with pytest.raises(InputError, match="given twice"):
        merge_shards([folders[0], folders[0], folders[1], folders[2]])
    other = RunFolder.create(tmp_path / "other", plan_of("fixed:interval=0.01", n=3))
    with pytest.raises(InputError, match="ran another plan"):
        merge_shards([folders[0], other.path])


def test_merged_shards_that_used_different_transports_say_so(sharded) -> None:
    """`--transport auto` decides per shard: a merge of shards that differ does not claim one."""
    _, folders, _, tmp_path = sharded
    assert merge_shards(folders).manifest["options"]["transport"] == "sender"  # auto, every shard
    other = tmp_path / "aiohttp-shard"
    shutil.copytree(folders[1], other)
    manifest = json.loads((other / RunFolder.MANIFEST).read_text())
    manifest["options"].update(transport="aiohttp", transport_reason=None)
    (other / RunFolder.MANIFEST).write_text(json.dumps(manifest))
    options = merge_shards([folders[0], other, folders[2]]).manifest["options"]
    assert options["transport"] == "mixed"
    assert (
        options["transport_reason"]
        == "the shards differ (shard 0: sender, shard 1: aiohttp, shard 2: sender)"
    )


@pytest.mark.slow
def test_merge_maps_another_hosts_clock_through_epoch_time(sharded) -> None:
    """Pretend shard 1 ran on another host: its monotonic clock is offset and its boot_id differs."""
    _, folders, _, tmp_path = sharded
    moved = on_another_host(folders[1], tmp_path / "elsewhere")

    same = merge_shards(folders).write(tmp_path / "same")
    mapped = merge_shards([folders[0], moved, folders[2]]).write(tmp_path / "mapped")
    a, _ = read_requests(same.requests_path)
    b, _ = read_requests(mapped.requests_path)
    # Through epoch time the mapping is as good as the two processes' clock anchors (well under 1 µs here).
    for column in TIME_COLUMNS:
        assert (a[column] - b[column]).abs().max() <= 1_000
    assert {s["clock_mapping"] for s in mapped.manifest()["merged_from"]} == {"same kernel", "epoch"}
    for x, y in zip(same.manifest()["arms"], mapped.manifest()["arms"], strict=True):
        assert abs(x["start_ns"] - y["start_ns"]) <= 1_000 and abs(x["end_ns"] - y["end_ns"]) <= 1_000
