"""describe_plan: realized rate, gap CV, burstiness and KS against the requested distribution."""

import dataclasses
import json

import numpy as np
import pytest

from traffic.arrivals import poisson_offsets
from traffic.builder import build_plan
from traffic.describe import describe_plan
from traffic.plan import make_plan
from traffic.spec import PlanSpec

SCHEDULES = [
    "fixed:interval=0.5",
    "uniform:low=0.1,high=0.5",
    "bursty:size=8,intra=0.01,gap=2.4",
    "bursty:size_min=5,size_max=8,intra=0.01,gap=2",
    "poisson",
    "gamma:cv=2",
    "concurrency:n=4",
]


@pytest.fixture(scope="module")
def summary():
    plan = build_plan(PlanSpec.parse({"schedules": SCHEDULES, "rate": 2, "n": 3000, "seed": 1}))
    return describe_plan(plan)


def arm(summary, name):
    return next(a for a in summary["arms"] if a["name"] == name)


def test_summary_is_json_with_the_documented_keys(summary):
    text = json.dumps(summary, allow_nan=False)  # no NaN anywhere
    data = json.loads(text)
    for key in (
        "n",
        "duration_s",
        "mean_rate",
        "gap_cv",
        "burstiness",
        "ks_statistic",
        "ks_pvalue",
        "plan_hash",
        "arms",
        "target_mean_rate",
        "prompt_source",
    ):
        assert key in data
    assert data["n"] == 3000 * len(SCHEDULES)
    assert [a["name"] for a in data["arms"]] == [
        "fixed",
        "uniform",
        "bursty",
        "bursty-2",
        "poisson",
        "gamma",
        "concurrency",
    ]


@pytest.mark.parametrize("name", ["fixed", "uniform", "bursty", "bursty-2", "poisson", "gamma"])
def test_every_open_loop_arm_realizes_its_rate_and_fits_its_distribution(summary, name):
    info = arm(summary, name)
    assert info["target_rate"] == pytest.approx(2.0)
    # The mean of n gaps has a standard error of cv/sqrt(n) relative to the mean: allow four of them.
    assert info["mean_rate"] == pytest.approx(2.0, rel=4 * max(info["gap_cv"], 0.01) / np.sqrt(info["n"]))
    assert info["duration_s"] == pytest.approx(2999 / info["mean_rate"])
    assert info["ks_pvalue"] > 0.01, info


def test_gap_cv_and_burstiness_order_the_processes(summary):
    cv = {a["name"]: a["gap_cv"] for a in summary["arms"] if a["gap_cv"] is not None}
    assert cv["fixed"] == pytest.approx(0.0, abs=1e-9)
    assert arm(summary, "fixed")["burstiness"] == pytest.approx(-1.0)
    # uniform on [low, high]: std/mean = (high-low)/sqrt(12) / ((low+high)/2)
    assert cv["uniform"] == pytest.approx((0.4 / np.sqrt(12)) / 0.3, rel=0.05)
    assert cv["poisson"] == pytest.approx(1.0, rel=0.05)
    assert arm(summary, "poisson")["burstiness"] == pytest.approx(0.0, abs=0.03)
    assert cv["gamma"] == pytest.approx(2.0, rel=0.1)
    assert cv["fixed"] < cv["uniform"] < cv["poisson"] < cv["gamma"] < cv["bursty"]


def test_closed_loop_arm_has_no_timing_statistics(summary):
    info = arm(summary, "concurrency")
    assert info["closed_loop"] and info["users"] == 4 and info["n"] == 3000
    assert info["mean_rate"] is None and info["ks_statistic"] is None and info["duration_s"] is None


def test_overall_figures_pool_the_open_loop_arms(summary):
    open_arms = [a for a in summary["arms"] if not a["closed_loop"]]
    assert summary["duration_s"] == pytest.approx(sum(a["duration_s"] for a in open_arms))
    assert summary["mean_rate"] == pytest.approx(2.0, rel=0.05)
    assert summary["ks_statistic"] == max(a["ks_statistic"] for a in open_arms)
    assert summary["ks_pvalue"] == pytest.approx(min(1.0, 6 * min(a["ks_pvalue"] for a in open_arms)))
    assert summary["target_mean_rate"] == 2.0


def test_ks_rejects_gaps_that_do_not_follow_the_requested_distribution():
    plan = build_plan(PlanSpec.parse({"schedules": ["uniform:low=0.1,high=0.5"], "n": 2000, "seed": 3}))
    honest = describe_plan(plan)["arms"][0]
    assert honest["ks_pvalue"] > 0.01
    # Same header (U[0.1, 0.5] requested), but Poisson arrivals of the same mean rate in the rows.
    rows = plan.rows.copy()
    rows["offset_s"] = poisson_offsets(2000, 1 / 0.3, 3)
    forged = describe_plan(make_plan(dataclasses.replace(plan.header), rows))["arms"][0]
    assert forged["mean_rate"] == pytest.approx(honest["mean_rate"], rel=0.1)
    assert forged["ks_pvalue"] < 1e-6 and forged["ks_statistic"] > 0.1


def test_ks_against_point_masses_catches_a_wrong_spacing():
    plan = build_plan(PlanSpec.parse({"schedules": ["fixed:interval=0.5"], "n": 200}))
    assert describe_plan(plan)["arms"][0]["ks_statistic"] == 0.0
    rows = plan.rows.copy()
    rows["offset_s"] = np.arange(200) * 0.5 + np.where(np.arange(200) % 2 == 0, 0.0, 0.1)
    wrong = describe_plan(make_plan(plan.header, rows))["arms"][0]
    # Gaps alternate 0.6 / 0.4 s: half of them lie below the requested 0.5 s, so D is about 1/2.
    assert wrong["ks_statistic"] == pytest.approx(0.5, abs=0.01) and wrong["ks_pvalue"] < 1e-6


def test_trace_arm_is_checked_against_poisson_arrivals(azure_trace):
    plan = build_plan(PlanSpec.parse({"schedules": [f"trace:path={azure_trace},end=1800,lengths=false"]}))
    info = describe_plan(plan)["arms"][0]
    assert "Poisson check" in info["ks_reference"]
    assert info["gap_cv"] > 1.0  # the Azure conversation trace is burstier than Poisson
    assert info["ks_pvalue"] < 0.01
