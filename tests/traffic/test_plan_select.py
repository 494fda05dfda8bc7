"""select_arms: the sub-plan an experiment's cell sends is exactly its arm's rows of the whole plan."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from foundation.errors import InputError
from traffic.builder import build_plan
from traffic.plan import PLAN_COLUMNS, load_plan, save_plan, select_arms
from traffic.spec import PlanSpec

ARMS = [
    "fixed:interval=0.25,name=fixed",
    "bursty:size=3,intra=0.01,gap=0.75,name=bursty",
    "poisson:rate=4,name=poisson",
    "concurrency:n=2,name=closed",
]
SAME = [c for c in PLAN_COLUMNS if c != "request_id"]  # what a cell must send exactly as the whole plan


def build(schedules: list[str], **extra) -> object:
    data = {"prompts": "synthetic", "n": 7, "max_tokens": 6, "seed": 3, "schedules": schedules, **extra}
    return build_plan(PlanSpec.parse(data))


def _same_rows(sub: pd.DataFrame, whole: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        sub[SAME].reset_index(drop=True), whole[SAME].reset_index(drop=True), check_exact=True
    )


@pytest.mark.parametrize("rate", [None, 8.0])
def test_each_arm_alone_is_its_rows_of_the_whole_plan(tmp_path, rate) -> None:
    plan = build(ARMS, rate=rate)
    for arm in plan.header.arms:
        sub = select_arms(plan, [arm.name])
        _same_rows(sub.rows, plan.arm(arm.name))
        assert sub.rows["request_id"].tolist() == list(range(7))
        assert sub.header.arms == (arm,) and sub.header.n == 7
        assert sub.header.seed == plan.header.seed and sub.header.prompt_source == plan.header.prompt_source
        assert sub.header.extra["selected_from"] == plan.header.plan_hash
        assert sub.header.plan_hash != plan.header.plan_hash
        # The hash is the sub-plan's own, and survives the file: load_plan recomputes and checks it.
        path = save_plan(sub, tmp_path / f"{arm.name}-{rate}.parquet")
        again = load_plan(path)
        assert again.header.plan_hash == sub.header.plan_hash
        pd.testing.assert_frame_equal(again.rows, sub.rows)
    closed = select_arms(plan, ["closed"]).rows
    assert closed["offset_s"].isna().all()  # a closed-loop arm keeps its NaN offsets


def test_several_arms_in_the_order_asked_renumbered() -> None:
    plan = build(ARMS)
    sub = select_arms(plan, ["poisson", "fixed"])
    assert [a.name for a in sub.header.arms] == ["poisson", "fixed"]
    assert sub.rows["request_id"].tolist() == list(range(14))
    _same_rows(sub.rows.iloc[:7], plan.arm("poisson"))
    _same_rows(sub.rows.iloc[7:], plan.arm("fixed"))


def test_the_same_arm_has_the_same_sub_plan_whatever_else_the_plan_holds() -> None:
    # Common random numbers: the arm's prompts and offsets do not depend on the other arms.
    small = select_arms(build(ARMS[:2]), ["fixed"])
    large = select_arms(build(ARMS), ["fixed"])
    assert small.header.plan_hash == large.header.plan_hash
    _same_rows(small.rows, large.rows)


def test_identical_schedules_under_two_names_differ_only_in_the_name() -> None:
    plan = build(["fixed:interval=0.25,name=a", "fixed:interval=0.25,name=b"], rate=4.0)
    a, b = select_arms(plan, ["a"]).rows, select_arms(plan, ["b"]).rows
    assert set(a["arm"]) == {"a"} and set(b["arm"]) == {"b"}
    columns = [c for c in SAME if c != "arm"]
    pd.testing.assert_frame_equal(a[columns], b[columns])
    assert np.all(np.diff(a["offset_s"]) > 0)


@pytest.mark.parametrize("names", [["nope"], ["fixed", "nope"], []])
def test_unknown_arm_is_an_input_error(names) -> None:
    plan = build(ARMS)
    with pytest.raises(InputError, match="no arm named"):
        select_arms(plan, names)
