"""Plans with shaping policies: every schedule x every policy is an arm, with the same offered arrivals
and prompts; the policy is in the header and the hash; plans without policies hash as they always did."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from foundation.errors import InputError
from traffic.builder import build_plan
from traffic.plan import load_plan, save_plan, select_arms
from traffic.shaping import parse_policy
from traffic.spec import PlanSpec, policy_text

BASE = {
    "schedules": ["poisson:rate=2", "fixed:interval=0.5,name=steady"],
    "n": 6,
    "seed": 7,
    "max_tokens": 16,
}
POLICIES = ["passthrough", "window:period=2", "batch:k=8,max_wait=2"]
# The plan BASE built with the joulebench before policies existed (commit ab358a1): a plan without
# policies must keep its hash, so run folders and experiments keep matching their plans.
UNSHAPED_HASH = "aaa18a935c441119f2adbabeb3c6af608089a01838611e9da3c8835f533c3796"


def test_a_plan_without_policies_hashes_as_before() -> None:
    plan = build_plan(PlanSpec.parse(BASE))
    assert plan.header.plan_hash == UNSHAPED_HASH
    assert all(arm.policy is None and arm.policy_name is None for arm in plan.header.arms)


def test_arms_are_schedules_times_policies_with_the_same_arrivals_and_prompts() -> None:
    shaped = build_plan(PlanSpec.parse({**BASE, "policies": POLICIES}))
    unshaped = build_plan(PlanSpec.parse(BASE))
    names = [arm.name for arm in shaped.header.arms]
    assert names == [
        f"{s}+{p}" for s in ("poisson", "steady") for p in ("passthrough", "window-2s", "batch-k8-2s")
    ]
    assert [a.policy_name for a in shaped.header.arms] == ["passthrough", "window-2s", "batch-k8-2s"] * 2
    assert [a.policy for a in shaped.header.arms[:3]] == [
        "passthrough",
        "window:period=2.0",
        "batch:k=8,max_wait=2.0",
    ]
    assert list(shaped.rows["request_id"]) == list(range(36))  # distinct ids, in arm order
    schedules = {arm.name: arm for arm in unshaped.header.arms}
    for arm in shaped.header.arms:
        schedule = schedules[arm.name.split("+")[0]]
        mine, alone = shaped.arm(arm.name), unshaped.arm(schedule.name)
        # Common random numbers: each policy sees the users of the unshaped schedule, exactly.
        assert np.array_equal(mine["offset_s"].to_numpy(), alone["offset_s"].to_numpy())
        assert list(mine["prompt"]) == list(alone["prompt"])
        assert (arm.kind, arm.spec, arm.mean_rate) == (schedule.kind, schedule.spec, schedule.mean_rate)
    assert shaped.header.extra["requests_per_arm"] == dict.fromkeys(names, 6)


def test_the_policy_is_in_the_hash(tmp_path) -> None:
    plan = build_plan(PlanSpec.parse({**BASE, "policies": ["window:period=2"]}))
    path = save_plan(plan, tmp_path / "plan.parquet")
    assert load_plan(path).header.arms[0].policy == "window:period=2.0"
    # The same rows under another policy (its name left alone): the hash catches it.
    table = pq.read_table(path)
    header = json.loads(table.schema.metadata[b"joulebench.plan"])
    header["arms"][0]["policy"] = "window:period=3.0"
    metadata = {**table.schema.metadata, b"joulebench.plan": json.dumps(header).encode()}
    pq.write_table(table.replace_schema_metadata(metadata), path)
    with pytest.raises(InputError, match="do not match the plan_hash"):
        load_plan(path)


def test_an_arm_selected_from_a_shaped_plan_keeps_its_policy() -> None:
    plan = build_plan(PlanSpec.parse({**BASE, "policies": POLICIES}))
    cell = select_arms(plan, ["steady+window-2s"])
    (arm,) = cell.header.arms
    assert (arm.policy, arm.policy_name) == ("window:period=2.0", "window-2s")
    assert np.array_equal(
        cell.rows["offset_s"].to_numpy(), plan.arm("steady+window-2s")["offset_s"].to_numpy()
    )


@pytest.mark.parametrize(
    "text",
    [
        "passthrough",
        "pace:rate=5",
        "token-bucket:rate=5,burst=10",
        "window:period=0.25",
        "batch:k=8,max_wait=1",
        "concurrency-cap:c=4",
        "slo-slack:ttft=2,margin=0.2",
        "slo-slack:e2e=1e-3",
        "custom:class=canonical_check:Keep,seconds=0.5,mode=x",
    ],
)
def test_the_canonical_spec_reads_back_as_the_same_policy(text: str, tmp_path, monkeypatch) -> None:
    (tmp_path / "canonical_check.py").write_text(
        "from traffic.shaping import QueuePolicy\n\n\n"
        "class Keep(QueuePolicy):\n"
        "    def __init__(self, params, rng):\n"
        "        super().__init__()\n\n"
        "    def decide(self, now_ns):\n"
        "        return list(self.held), None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    policy = parse_policy(text)
    again = parse_policy(policy_text(policy))
    assert again == policy and again.name == policy.name


def test_policies_from_yaml(tmp_path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("schedules: [poisson:rate=2]\nn: 3\npolicies: window:period=1\n")
    assert PlanSpec.from_yaml(path).arm_names == ["poisson+window-1s"]
    path.write_text("schedules: [poisson:rate=2]\nn: 3\npolicies: [passthrough, 'batch:k=2,max_wait=0.5']\n")
    assert PlanSpec.from_yaml(path).arm_names == ["poisson+passthrough", "poisson+batch-k2-0.5s"]
    path.write_text("schedules: [poisson:rate=2]\nn: 3\npolicies: [hold]\n")
    with pytest.raises(InputError, match=r"plan.yaml: policies\[0\]: unknown policy 'hold'"):
        PlanSpec.from_yaml(path)


@pytest.mark.parametrize(
    ("policies", "schedules", "expected"),
    [
        (
            ["window:period=0"],
            ["poisson:rate=2"],
            "policies[0]: window: period: input should be greater than 0",
        ),
        (["passthrough", "batch:k=8"], ["poisson:rate=2"], "policies[1]: batch: missing parameter max_wait"),
        (
            ["window:period=1", "window:period=1.0"],
            ["poisson:rate=2"],
            "policies[1]: policy 'window-1s' is given twice",
        ),
        (
            ["passthrough"],
            ["poisson:rate=2", "concurrency:n=2"],
            "policies: arm 'concurrency' is closed loop",
        ),
    ],
)
def test_bad_policies_are_one_line_naming_the_setting(policies, schedules, expected) -> None:
    with pytest.raises(InputError) as caught:
        PlanSpec.parse({"schedules": schedules, "n": 3, "policies": policies})
    message = str(caught.value)
    assert "\n" not in message and message.startswith(expected), message
