"""What a plan's figures do not say by themselves is said: prompt_tokens copied from a trace (a warning
at build, a note in `plan describe`) and the prompt records skipped while building."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from joulebench_testkit import run_joulebench

from traffic.builder import build_plan
from traffic.describe import build_warnings, describe_plan
from traffic.spec import PlanSpec

USABLE = [
    {"prompt": "hello there, how are you"},
    {"prompt": "tell me about the energy use of GPUs"},
    {"prompt": "a third prompt with some text"},
]
UNUSABLE = [{"prompt": ""}, {"messages": [{"role": "assistant", "content": "no user turn"}]}]
PROMPTS = [USABLE[0], UNUSABLE[0], USABLE[1], UNUSABLE[1], USABLE[2]]


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path]:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(record) + "\n" for record in PROMPTS))
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "time,input_tokens,output_tokens\n" + "".join(f"{i * 0.5},{5 + i},{3 + i}\n" for i in range(10))
    )
    return prompts, trace


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning:" in line]


def test_trace_lengths_without_tokenizer_are_warned_and_described(sources, tmp_path: Path) -> None:
    prompts, trace = sources
    out = tmp_path / "plan.parquet"
    built = run_joulebench(
        "plan", "build", "--prompts", str(prompts), "--schedule", f"trace:path={trace}", "--replace",
        "--out", str(out), "--quiet",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (warning,) = _warnings(built.stderr)
    assert "prompt_tokens are trace arm 'trace''s input lengths" in warning and "--tokenizer" in warning

    described = run_joulebench("plan", "describe", str(out), "--json")
    assert described.returncode == 0, described.stderr
    summary = json.loads(described.stdout)
    assert summary["prompt_tokens_from"] == "trace"
    assert summary["prompt_source"]["skipped"] == len(UNUSABLE)
    assert summary["prompt_source"]["records"] == len(USABLE)
    assert any("trace's input lengths" in note for note in summary["notes"])
    assert f"{len(UNUSABLE)} of {len(PROMPTS)} source records skipped" in " ".join(summary["notes"])
    text = run_joulebench("plan", "describe", str(out))  # the table says the same
    assert [f"note: {note}" for note in summary["notes"]] == [
        line for line in text.stdout.splitlines() if line.startswith("note: ")
    ]


def test_no_note_where_prompt_tokens_are_not_the_trace_s(sources, capsys) -> None:
    prompts, trace = sources
    spec = {"prompts": str(prompts), "schedules": [f"trace:path={trace},lengths=false"], "replace": True}
    plan = build_plan(PlanSpec.parse(spec))
    assert build_warnings(plan) == []
    assert capsys.readouterr().err == ""  # building itself never prints (traffic is pure)
    summary = describe_plan(plan)
    assert summary["prompt_tokens_from"] is None and plan.rows["prompt_tokens"].isna().all()
    assert summary["notes"] == [
        f"{len(UNUSABLE)} of {len(PROMPTS)} source records skipped (empty prompt or no user turn)"
    ]


def test_build_warnings_name_the_trace_arm_whose_lengths_were_copied(sources, capsys) -> None:
    prompts, trace = sources
    spec = {"prompts": str(prompts), "schedules": [f"trace:path={trace},name=replay"], "replace": True}
    plan = build_plan(PlanSpec.parse(spec))
    (warning,) = build_warnings(plan)
    assert "prompt_tokens are trace arm 'replay''s input lengths" in warning and "--tokenizer" in warning
    assert capsys.readouterr().err == ""  # said by the command that built it, not by the builder
