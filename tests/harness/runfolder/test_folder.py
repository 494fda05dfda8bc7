"""Run folders: names, the manifest, and reading a folder whose runner never compacted its log."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.records import Shard
from harness.runfolder import RunFolder
from harness.runfolder.request_log import RecordLog, expected_records, log_header
from traffic.builder import build_plan
from traffic.spec import PlanSpec


@pytest.fixture(scope="module")
def plan():
    return build_plan(PlanSpec.parse({"prompts": "synthetic", "n": 4}))


def test_names_are_unique_and_carry_the_plan_hash(tmp_path, plan) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    first = RunFolder.create(tmp_path, plan, now=when)
    second = RunFolder.create(tmp_path, plan, now=when)
    assert first.run_id == f"20260102T030405-{plan.header.plan_hash[:8]}"
    assert second.run_id == f"{first.run_id}-2"
    assert first.plan().header.plan_hash == plan.header.plan_hash
    assert first.manifest() == {"schema_version": 1, "run_id": first.run_id}


def test_manifest_sections_are_merged(tmp_path, plan) -> None:
    folder = RunFolder.create(tmp_path, plan)
    folder.update_manifest(target={"url": "x"})
    folder.update_manifest(power={"source": "sidecar"})
    assert folder.manifest()["target"] == {"url": "x"} and folder.manifest()["power"] == {"source": "sidecar"}


def test_reading_recovers_an_uncompacted_log(tmp_path, plan) -> None:
    folder = RunFolder.create(tmp_path, plan)
    anchor = ClockAnchor.now()
    header = log_header(anchor=anchor, plan=plan, shard=Shard(), warmup=0, api="openai-chat", stream=True)
    log = RecordLog(folder.log_path, header)
    rec = expected_records(plan, shard=Shard(), warmup=0, api="openai-chat", stream=True)[0]
    rec.sent_ns = anchor.mono_ns
    log.sent(rec)
    log.close()
    rows = RunFolder.open(folder.path).requests()
    assert rows["status"].tolist() == ["cancelled", "not_sent", "not_sent", "not_sent"]
    assert folder.requests_path.is_file() and folder.manifest()["records"]["recovered"] is True


def test_not_a_run_folder(tmp_path) -> None:
    with pytest.raises(InputError, match="not a joulebench run folder"):
        RunFolder.open(tmp_path)
    empty = tmp_path / "x"
    with pytest.raises(InputError, match="no request log"):
        RunFolder.create(empty, build_plan(PlanSpec.parse({"prompts": "synthetic", "n": 2}))).requests()


def test_a_log_reopened_with_its_header_appends_and_another_header_is_refused(tmp_path, plan) -> None:
    """A measured run writes the log's header as it makes the folder; the runner's log of the same header
    carries on after it (one header line), a log of another header never mixes into it."""
    folder = RunFolder.create(tmp_path, plan)
    anchor = ClockAnchor.now()
    header = log_header(anchor=anchor, plan=plan, shard=Shard(), warmup=0, api="openai-chat", stream=True)
    RecordLog(folder.log_path, header).close()
    log = RecordLog(folder.log_path, header)
    log.event("tick", t=anchor.mono_ns)
    log.close()
    assert [line.split(",")[0] for line in folder.log_path.read_text().splitlines()] == [
        '{"k":"header"',
        '{"k":"tick"',
    ]
    with pytest.raises(FileExistsError):
        RecordLog(folder.log_path, {**header, "warmup": 1})


def test_unreadable_paths_are_one_line_errors(tmp_path, plan) -> None:
    with pytest.raises(InputError, match=r"cannot open the run folder \(File name too long\)"):
        RunFolder.open(tmp_path / ("x" * 300))
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=r"cannot create the folder \(Not a directory\)"):
        RunFolder.check_out(tmp_path / "file" / "child")
    folder = RunFolder.create(tmp_path / "runs", plan)
    header = log_header(
        anchor=ClockAnchor.now(), plan=plan, shard=Shard(), warmup=0, api="openai-chat", stream=True
    )
    RecordLog(folder.log_path, header).close()
    folder.requests_path.mkdir()  # a hand edit, a bad copy: what is there is not a file to replace
    with pytest.raises(InputError, match=rf"^{folder.requests_path}: cannot write it \(Is a directory\)$"):
        folder.compact()
    assert sorted(p.name for p in folder.path.iterdir()) == [
        "manifest.json",
        "plan.parquet",
        "plan.parquet.json",
        "requests.jsonl",
        "requests.parquet",
    ]
