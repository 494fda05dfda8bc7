"""Schedule syntax (`KIND:key=value,...`), per-kind validation, arm names and rate matching."""

import pytest

from traffic.schedules import KINDS, arm_names, help_text, mean_gap, parse_schedule, resolve


def test_parse_types_and_defaults():
    schedule = parse_schedule("uniform:low=0.1,high=0.5")
    assert schedule.kind == "uniform"
    assert schedule.params == {"low": 0.1, "high": 0.5}
    assert schedule.spec == "uniform:low=0.1,high=0.5"
    trace = parse_schedule("trace:path=x.csv,time_scale=0.5,lengths=false")
    assert trace.params["time_scale"] == 0.5
    assert trace.params["lengths"] is False
    assert trace.params["format"] == "auto" and trace.params["start"] == 0.0
    assert parse_schedule("bursty:size=8,intra=0.01,gap=2.4").params["size"] == 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("warp:x=1", "unknown schedule kind 'warp'"),
        ("fixed:interval=0", "interval must be > 0"),
        ("fixed:interval=-0.5", "interval must be > 0"),
        ("fixed", "needs interval"),
        ("uniform:low=0.5,high=0.1", "low (0.5) must be < high (0.1)"),
        ("uniform:low=0.1", "missing key(s) high"),
        ("uniform:low=-1,high=1", "low must be >= 0"),
        ("uniform:low=0.1,high=abc", "high must be a number"),
        ("uniform:low=0.1,high=inf", "high must be finite"),
        ("uniform:low=0.1,high=0.5,speed=2", "unknown key 'speed'"),
        ("uniform:low=0.1,low=0.2,high=1", "given twice"),
        ("uniform:low", "expected key=value"),
        ("bursty:size=8,intra=0.01,gap=0", "gap must be > 0"),
        ("bursty:size=0,intra=0.01,gap=1", "size must be >= 1"),
        ("bursty:size=2.5,intra=0.01,gap=1", "size must be an integer"),
        ("bursty:intra=0.01,gap=1", "give either size"),
        ("bursty:size=3,size_min=2,size_max=4,intra=0.01,gap=1", "give either size"),
        ("bursty:size_min=5,size_max=3,intra=0.01,gap=1", "size_min <= size_max"),
        ("poisson:rate=0", "rate must be > 0"),
        ("gamma:rate=1", "missing key(s) cv"),
        ("gamma:rate=1,cv=0", "cv must be > 0"),
        ("concurrency:n=0", "n (concurrent users) must be >= 1"),
        ("trace:format=azure", "missing key(s) path"),
        ("trace:path=x.csv,format=bogus", "format must be one of"),
        ("trace:path=x.csv,start=10,end=5", "end (5) must be > start (10)"),
        ("trace:path=x.csv,time_scale=0", "time_scale must be > 0"),
        ("trace:path=x.csv,time_scale=2,rate=3", "give time_scale or rate"),
        ("fixed:interval=1,name=a b", "may use only letters"),
    ],
)
def test_bad_schedules_name_the_problem(text, expected):
    with pytest.raises(ValueError) as caught:
        parse_schedule(text)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_arm_names_default_to_kind_and_stay_unique():
    schedules = [
        parse_schedule(t)
        for t in (
            "uniform:low=0,high=1",
            "fixed:interval=1",
            "uniform:low=0,high=2",
            "fixed:interval=2,name=uniform-2",
        )
    ]
    assert arm_names(schedules) == ["uniform", "fixed", "uniform-3", "uniform-2"]
    with pytest.raises(ValueError, match="used twice"):
        arm_names([parse_schedule("fixed:interval=1,name=a"), parse_schedule("fixed:interval=2,name=a")])


def test_rate_scales_interval_keys_by_one_factor():
    uniform = resolve(parse_schedule("uniform:low=0.1,high=0.5"), 2.0)
    assert uniform["low"] == pytest.approx(0.1 * 0.5 / 0.3)
    assert uniform["high"] == pytest.approx(0.5 * 0.5 / 0.3)
    assert mean_gap("uniform", uniform) == pytest.approx(0.5)
    bursty = resolve(parse_schedule("bursty:size=8,intra=0.01,gap=2.4"), 2.0)
    assert bursty["gap"] / bursty["intra"] == pytest.approx(240)  # shape kept
    assert mean_gap("bursty", bursty) == pytest.approx(0.5)
    random_bursts = resolve(parse_schedule("bursty:size_min=4,size_max=8,intra=0.01,gap=1"), 4.0)
    assert mean_gap("bursty", random_bursts) == pytest.approx(0.25)
    assert resolve(parse_schedule("fixed:interval=0.3"), 2.0)["interval"] == pytest.approx(0.5)
    assert resolve(parse_schedule("poisson"), 3.0)["rate"] == 3.0
    assert resolve(parse_schedule("gamma:cv=2"), 3.0) == {"rate": 3.0, "cv": 2.0}


def test_the_arms_own_rate_wins_and_no_rate_keeps_parameters():
    assert resolve(parse_schedule("fixed:rate=4"), 2.0)["interval"] == pytest.approx(0.25)
    assert resolve(parse_schedule("uniform:low=0.1,high=0.5"), None) == {"low": 0.1, "high": 0.5}
    with pytest.raises(ValueError, match="needs rate"):
        resolve(parse_schedule("poisson"), None)


def test_help_documents_every_kind_and_key():
    text = help_text()
    for kind in KINDS.values():
        assert f"{kind.name}:" in text
        for key in kind.keys:
            if key.name != "name":
                assert f"{key.name}:" in text
    assert "end-to-start" in text
