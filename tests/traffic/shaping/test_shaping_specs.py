"""Policy specs (`KIND:key=value,...`): parsing, one-line errors naming policy and parameter, names."""

from __future__ import annotations

import re
import sys
import textwrap

import numpy as np
import pytest

from traffic.shaping import POLICIES, SimServer, parse_policy, simulate

ARM_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # what traffic.schedules accepts as an arm name


@pytest.mark.parametrize(
    ("text", "name", "params"),
    [
        ("passthrough", "passthrough", {}),
        ("pace:rate=5", "pace-5rps", {"rate": 5.0}),
        ("token-bucket:rate=5,burst=10", "token-bucket-5rps-b10", {"rate": 5.0, "burst": 10}),
        ("window:period=1", "window-1s", {"period": 1.0}),
        (" Window : period = 0.5 ", "window-0.5s", {"period": 0.5}),
        ("batch:k=8,max_wait=1", "batch-k8-1s", {"k": 8, "max_wait": 1.0}),
        ("concurrency-cap:c=4", "concurrency-cap-4", {"c": 4}),
        ("slo-slack:ttft=2", "slo-slack-ttft2s", {"ttft": 2.0, "e2e": None, "margin": 0.1}),
        ("slo-slack:ttft=2,e2e=8,margin=0.25", "slo-slack-ttft2s-e2e8s-margin0.25s", {"margin": 0.25}),
        ("slo-slack:e2e=1e3,alpha=0.5,spread=0", "slo-slack-e2e1000s-alpha0.5-spread0", {"spread": 0.0}),
    ],
)
def test_specs_parse_to_typed_parameters_and_a_canonical_name(text, name, params):
    spec = parse_policy(text)
    assert spec.name == name
    assert ARM_NAME.match(spec.name)
    assert {key: getattr(spec, key) for key in params} == params


def test_different_parameters_give_different_names_and_equal_ones_the_same():
    texts = [
        "window:period=1",
        "window:period=1.0000001",
        "window:period=1.5",
        "pace:rate=1e20",
        "pace:rate=1e21",
    ]
    names = [parse_policy(text).name for text in texts]
    assert len(set(names)) == len(names) and all(ARM_NAME.match(n) for n in names)
    assert parse_policy("window:period=1.0").name == parse_policy("window:period=1").name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hold:t=1", "unknown policy 'hold' (known: passthrough, pace, token-bucket, window, batch, "),
        ("window:T=1", "window: unknown parameter 'T' (parameters: period)"),
        ("passthrough:rate=1", "passthrough: unknown parameter 'rate' (it takes no parameters)"),
        ("window", "window: missing parameter period (parameters: period)"),
        ("batch:k=8", "batch: missing parameter max_wait (parameters: k, max_wait)"),
        ("window:period=0", "window: period: input should be greater than 0 (got '0')"),
        ("window:period=-1", "window: period: input should be greater than 0"),
        ("window:period=abc", "window: period: input should be a valid number"),
        ("window:period=inf", "window: period: input should be a finite number (got 'inf')"),
        ("window:period=nan", "window: period: input should be a finite number"),
        ("window:period=1e400", "window: period: input should be a finite number"),
        ("window:period=2e9", "window: period: input should be less than or equal to"),
        ("pace:rate=0", "pace: rate: input should be greater than or equal to"),
        ("token-bucket:rate=1,burst=0", "token-bucket: burst: input should be greater than or equal to 1"),
        ("batch:k=2.5,max_wait=1", "batch: k: input should be a valid integer"),
        ("batch:k=0,max_wait=1", "batch: k: input should be greater than or equal to 1"),
        ("concurrency-cap:c=-3", "concurrency-cap: c: input should be greater than or equal to 1"),
        ("slo-slack", "slo-slack: give ttft, e2e or both"),
        ("slo-slack:margin=1", "slo-slack: give ttft, e2e or both"),
        ("slo-slack:ttft=2,alpha=1.5", "slo-slack: alpha: input should be less than or equal to 1"),
        ("slo-slack:ttft=2,margin=-0.1", "slo-slack: margin: input should be greater than or equal to 0"),
        ("window:period", "window: expected key=value, got 'period'"),
        ("window:=1", "window: expected key=value, got '=1'"),
        ("window:period=1,period=2", "window: parameter 'period' given twice"),
        ("custom", "custom: missing parameter class (parameters: class, KEY=VALUE)"),
        ("custom:class=nomodule", "custom: class=nomodule: expected module:Class"),
        ("custom:class=joulebench_no_such_mod:P", "custom: class=joulebench_no_such_mod:P: no module named"),
        ("custom:class=json:Nothing", "custom: class=json:Nothing: module json has no class 'Nothing'"),
        (
            "custom:class=json:JSONDecoder",
            "custom: class=json:JSONDecoder: not a shaping policy, it lacks start",
        ),
    ],
)
def test_bad_specs_are_one_line_naming_the_policy_and_the_parameter(text, expected):
    with pytest.raises(ValueError) as info:
        parse_policy(text)
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_every_parameter_is_described():
    for kind, model in POLICIES.items():
        assert model.summary.strip(), kind
        for field, info in model.model_fields.items():
            assert (info.description or "").strip(), f"{kind}.{field}"


POLICY_MODULE = textwrap.dedent(
    '''
    from traffic.shaping import QueuePolicy


    class NextOnly(QueuePolicy):
        """Releases one held request per poll, and asks for the next poll 1 ms later."""

        def __init__(self, params, rng):
            super().__init__()
            if set(params) - {"step"}:
                raise ValueError(f"unknown parameter(s) {sorted(set(params) - {'step'})}")
            self.step_ns = int(params.get("step", "1000000"))

        def decide(self, now_ns):
            ids = list(self.held)[:1]
            return ids, (now_ns + self.step_ns if len(self.held) > len(ids) else None)


    class Broken:
        def __init__(self, params, rng):
            raise RuntimeError("boom\\nsecond line")

        start = arrived = sent = first_token = finished = cancelled = poll = lambda *args: None


    class NoPoll:
        def __init__(self, params, rng):
            pass

        start = arrived = sent = first_token = finished = cancelled = lambda *args: None
    '''
)


@pytest.fixture
def policy_module(tmp_path, monkeypatch):
    (tmp_path / "shaping_test_policies.py").write_text(POLICY_MODULE)
    (tmp_path / "shaping_test_broken.py").write_text("raise RuntimeError('at import\\nline two')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "shaping_test_policies"
    sys.modules.pop("shaping_test_policies", None)


def test_a_custom_class_is_imported_constructed_with_its_parameters_and_driven_like_the_others(policy_module):
    spec = parse_policy(f"custom:class={policy_module}:NextOnly,step=2000000")
    assert spec.name == "custom-NextOnly-step2000000"
    policy = spec.create(np.random.default_rng(1))
    outcomes = simulate(policy, [0, 0, 0], SimServer(0.01))
    # The sim polls again after each release, so the three go at once despite one per poll.
    assert [o.released_ns for o in outcomes] == [0, 0, 0]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            "shaping_test_policies:NextOnly,colour=red",
            "class=shaping_test_policies:NextOnly: unknown parameter",
        ),
        ("shaping_test_policies:Broken", "constructing it failed: RuntimeError: boom second line"),
        ("shaping_test_policies:NoPoll", "not a shaping policy, it lacks poll (a policy implements start,"),
        ("shaping_test_broken:P", "importing shaping_test_broken failed: RuntimeError: at import line two"),
    ],
)
def test_a_custom_class_that_fails_is_one_line(policy_module, target, expected):
    with pytest.raises(ValueError) as info:
        parse_policy(f"custom:class={target}")
    assert str(info.value).startswith("custom: class=") and expected in str(info.value)
    assert "\n" not in str(info.value)
