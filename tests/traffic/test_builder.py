"""build_plan: determinism, multi-arm plans over one prompt sequence, load matching, traces, rows."""

import json

import numpy as np
import pytest

from foundation.errors import InputError
from traffic.builder import build_plan
from traffic.plan import PLAN_COLUMNS, load_plan, save_plan
from traffic.spec import PlanSpec

ARMS = ["fixed:interval=0.5", "uniform:low=0.1,high=0.5", "bursty:size=8,intra=0.01,gap=2.4"]


def build(**data):
    return build_plan(PlanSpec.parse(data))


def test_same_seed_same_hash_different_seed_different_plan(ultrachat):
    spec = {"prompts": str(ultrachat), "schedules": [*ARMS, "poisson:rate=3"], "n": 200}
    a, b, c = build(seed=1, **spec), build(seed=1, **spec), build(seed=2, **spec)
    assert a.header.plan_hash == b.header.plan_hash
    assert a.rows.equals(b.rows)
    assert c.header.plan_hash != a.header.plan_hash
    # Both the prompts and the random arrivals change with the seed (fixed spacing does not).
    assert list(c.rows["prompt_id"]) != list(a.rows["prompt_id"])
    for arm in ("uniform", "poisson"):
        assert not np.array_equal(a.arm(arm)["offset_s"], c.arm(arm)["offset_s"])
    np.testing.assert_array_equal(a.arm("fixed")["offset_s"], c.arm("fixed")["offset_s"])


def test_multi_arm_plan_replays_one_prompt_sequence_at_one_rate(ultrachat):
    plan = build(
        prompts=str(ultrachat), schedules=ARMS, rate=2, n=300, seed=1, max_tokens=128, ignore_eos=True
    )
    assert plan.header.n == 900 and [a.name for a in plan.header.arms] == ["fixed", "uniform", "bursty"]
    assert plan.header.target_mean_rate == 2.0
    sequences = [list(plan.arm(arm.name)["prompt_id"]) for arm in plan.header.arms]
    assert sequences[0] == sequences[1] == sequences[2]
    assert len(set(sequences[0])) == 300  # without replacement
    for arm in plan.header.arms:
        rows = plan.arm(arm.name)
        assert arm.mean_rate == pytest.approx(2.0)
        offsets = rows["offset_s"].to_numpy()
        assert offsets[0] == 0.0 and np.all(np.diff(offsets) >= 0)
        assert 1 / np.diff(offsets).mean() == pytest.approx(2.0, rel=0.1)
        assert list(rows["seq"]) == list(range(300))
    assert plan.rows["request_id"].tolist() == list(range(900))
    assert set(plan.rows["max_tokens"]) == {128} and plan.rows["ignore_eos"].all()
    # The rate scaled the written parameters, and the schedule as written is kept.
    uniform = plan.header.arms[1]
    assert uniform.spec == "uniform:low=0.1,high=0.5"
    assert uniform.params["high"] / uniform.params["low"] == pytest.approx(5.0)


def test_adding_an_arm_does_not_change_the_others():
    one = build(schedules=["uniform:low=0.1,high=0.5"], n=100, seed=3)
    two = build(schedules=["poisson:rate=2", "uniform:low=0.1,high=0.5"], n=100, seed=3)
    np.testing.assert_array_equal(one.arm("uniform")["offset_s"], two.arm("uniform")["offset_s"])


def test_rows_have_the_contract_columns_and_survive_save_and_load(tmp_path, ultrachat):
    plan = build(
        prompts=str(ultrachat), schedules=["gamma:rate=4,cv=2", "concurrency:n=3"], n=50, temperature=0.7
    )
    assert list(plan.rows.columns) == list(PLAN_COLUMNS)
    closed = plan.arm("concurrency")
    assert closed["offset_s"].isna().all()
    assert plan.header.arms[1].users == 3 and plan.header.arms[1].mean_rate is None
    assert plan.header.target_mean_rate is None
    assert (plan.rows["temperature"] == 0.7).all()
    path = save_plan(plan, tmp_path / "plan.parquet")
    loaded = load_plan(path)
    assert loaded.header.plan_hash == plan.header.plan_hash
    assert loaded.header.prompt_source["content_hash"] == plan.header.prompt_source["content_hash"]
    header = json.loads((tmp_path / "plan.parquet.json").read_text())
    assert header["extra"]["spec"]["schedules"] == ["gamma:rate=4,cv=2", "concurrency:n=3"]


def test_prompt_source_in_the_header(energy_score):
    plan = build(prompts=str(energy_score), n=10, polite=True, max_prompt_chars=2000)
    source = plan.header.prompt_source
    assert source["content_hash"] == "sha256:99410f8dd50a176a7dfba137a4ff51a4dc555648f76eb377e43e9ba79129d835"
    assert source["provenance"]["_license"] == "apache-2.0"
    assert source["options"]["polite"] is True and source["options"]["max_chars"] == 2000
    assert plan.rows["prompt"].str.endswith("\n\nThank you!").all()
    assert (plan.rows["prompt_chars"] <= 2000).all()


def test_duration_plans_cut_each_arm():
    plan = build(schedules=["fixed:interval=0.5", "poisson:rate=4"], duration=30, seed=2)
    assert len(plan.arm("fixed")) == 60
    assert plan.arm("poisson")["offset_s"].max() < 30
    assert len(plan.arm("poisson")) == pytest.approx(120, rel=0.3)
    # Arms of different lengths replay prefixes of the same sequence.
    fixed_ids = list(plan.arm("fixed")["prompt_id"])
    poisson_ids = list(plan.arm("poisson")["prompt_id"])
    shorter = min(len(fixed_ids), len(poisson_ids))
    assert fixed_ids[:shorter] == poisson_ids[:shorter]


def test_trace_arm_with_synthetic_prompts(azure_trace, llama_tokenizer):
    schedule = f"trace:path={azure_trace},format=azure,time_scale=0.5"
    plan = build(schedules=[schedule], duration=20, tokenizer=str(llama_tokenizer))
    rows = plan.rows
    offsets = rows["offset_s"].to_numpy()
    assert offsets.max() < 20 and np.all(np.diff(offsets) >= 0)
    arm = plan.header.arms[0]
    assert arm.params["time_scale"] == 0.5 and arm.params["sha256"].startswith("sha256:2f1e5b66")
    # First rows of the trace: 374/44 and 396/109 tokens; prompts are generated to the input length.
    assert rows["max_tokens"].iloc[:2].tolist() == [44, 109]
    assert np.all(np.abs(rows["prompt_tokens"].iloc[:2].to_numpy() - [374, 396]) <= 2)
    assert offsets[1] == pytest.approx(4.314579 * 0.5)


def test_trace_arm_matches_file_prompts_and_other_arms_replay_them(ultrachat, mooncake_trace, tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(
        "time,input_tokens,output_tokens\n" + "".join(f"{i * 0.5},{20 + i},{10 + i}\n" for i in range(40))
    )
    plan = build(
        prompts=str(ultrachat), schedules=[f"trace:path={trace}", "fixed:interval=0.25"], n=40, seed=1
    )
    trace_rows, fixed_rows = plan.arm("trace"), plan.arm("fixed")
    assert trace_rows["max_tokens"].tolist() == [10 + i for i in range(40)]
    assert trace_rows["prompt_tokens"].tolist() == [20 + i for i in range(40)]  # the trace's input lengths
    # Without a tokenizer prompts are matched at ~4 characters per token.
    estimated = np.ceil(trace_rows["prompt_chars"].to_numpy() / 4)
    assert np.median(np.abs(estimated - np.arange(20, 60)) / np.arange(20, 60)) < 0.15
    assert list(fixed_rows["prompt_id"]) == list(trace_rows["prompt_id"])
    assert list(fixed_rows["max_tokens"]) == list(trace_rows["max_tokens"])
    with pytest.raises(InputError, match="only one trace arm may set prompt lengths"):
        build(schedules=[f"trace:path={mooncake_trace},end=30", f"trace:path={trace}"])
    both = build(schedules=[f"trace:path={mooncake_trace},end=30,lengths=false", f"trace:path={trace}"], n=40)
    assert both.header.arms[0].params["lengths"] is False


def test_trace_rate_sets_time_scale(azure_trace):
    plan = build(schedules=[f"trace:path={azure_trace},start=600,end=1200", "poisson"], rate=2, seed=4)
    trace_arm = plan.header.arms[0]
    assert trace_arm.mean_rate == pytest.approx(2.0)
    offsets = plan.arm("trace")["offset_s"].to_numpy()
    realized = (len(offsets) - 1) / (offsets[-1] - offsets[0])
    assert realized == pytest.approx(2.0, rel=1e-9)
    assert len(plan.arm("poisson")) == len(offsets)  # n follows the trace when --n is not given


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"n": 10, "ignore_eos": True}, "ignore_eos: needs max_tokens"),
        ({"n": 501, "prompts": "ULTRACHAT"}, "only 500 prompts"),
        ({"schedules": ["fixed:interval=100"], "duration": 0.001, "n": 3}, None),
    ],
)
def test_build_time_errors(ultrachat, data, expected):
    data = {k: (str(ultrachat) if v == "ULTRACHAT" else v) for k, v in data.items()}
    if expected is None:
        assert len(build(**data).rows) == 1  # the request at offset 0 is within any duration
        return
    with pytest.raises(InputError, match=expected):
        build(**data)


@pytest.mark.slow
def test_a_hundred_thousand_requests():
    plan = build(schedules=["poisson:rate=1000"], n=100_000, seed=1)
    assert plan.header.n == 100_000 and plan.rows["prompt_id"].nunique() == 100_000


def test_the_header_spec_rebuilds_the_same_plan(ultrachat):
    plan = build(prompts=str(ultrachat), schedules=ARMS, rate=2, n=50, seed=9, polite=True, max_tokens=64)
    again = build_plan(PlanSpec.parse(plan.header.extra["spec"]))
    assert again.header.plan_hash == plan.header.plan_hash
