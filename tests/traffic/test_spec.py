"""PlanSpec: the one place plan settings are validated, from flags or YAML, with one-line errors."""

import pytest

from foundation.errors import InputError
from traffic.spec import DEFAULT_SCHEDULE, PlanSpec


def parse_error(**data) -> str:
    with pytest.raises(InputError) as caught:
        PlanSpec.parse(data)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults():
    spec = PlanSpec.parse({"n": 10})
    assert spec.prompts == "synthetic" and spec.schedules == [DEFAULT_SCHEDULE]
    assert spec.arm_names == ["fixed"]
    assert spec.source.kind == "synthetic"
    assert [s.kind for s in spec.parsed_schedules] == ["fixed"]


def test_values_given_as_text_are_converted():
    spec = PlanSpec.parse({"n": "10", "rate": "2.5", "seed": "3", "schedules": ["poisson"]})
    assert (spec.n, spec.rate, spec.seed) == (10, 2.5, 3)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"n": 0}, "n: Input should be greater than 0 (got 0)"),
        ({"n": "ten"}, "n: Input should be a valid integer"),
        ({"n": 5, "rate": -1}, "rate: Input should be greater than 0"),
        ({"n": 5, "rate": "nan"}, "rate: Input should be a finite number"),
        ({"n": 5, "duration": 0}, "duration: Input should be greater than 0"),
        ({"n": 5, "seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({"n": 5, "colour": "red"}, "colour: unknown setting"),
        ({"n": 5, "schedules": []}, "schedules: give at least one schedule"),
        ({"n": 5, "schedules": ["fixed:interval=1", "warp"]}, "schedules[1]: unknown schedule kind 'warp'"),
        (
            {"n": 5, "schedules": ["uniform:low=2,high=1"]},
            "schedules[0]: uniform: low (2) must be < high (1)",
        ),
        ({"n": 5, "schedules": ["poisson"]}, "schedules[0]: poisson: needs rate"),
        ({"schedules": ["uniform:low=0,high=1"]}, "give n (requests per arm) or duration"),
        ({"duration": 10, "schedules": ["concurrency:n=2"]}, "a closed-loop arm needs n"),
        (
            {"n": 5, "schedules": ["trace:path=/nope/trace.csv"]},
            "schedules[0]: trace: /nope/trace.csv: trace file",
        ),
        (
            {"n": 5, "schedules": ["fixed:interval=1,name=a", "poisson:rate=1,name=a"]},
            "arm name(s) used twice",
        ),
        ({"n": 5, "prompts": "/nope/prompts.jsonl"}, "prompts: /nope/prompts.jsonl: prompt file not found"),
        ({"n": 5, "fields": {"prompt": "q"}}, "fields: field mapping applies to file and hf sources"),
        ({"n": 5, "conversation": "all"}, "conversation: Input should be 'first' or 'full'"),
        ({"n": 5, "conversation": "full"}, "conversation: synthetic prompts are single turns"),
        (
            {"n": 5, "tokenizer": "/nope/tokenizer.json"},
            "tokenizer: /nope/tokenizer.json: tokenizer not found",
        ),
        ({"n": 5, "max_prompt_tokens": 10}, "max_prompt_tokens: token length filters need a tokenizer"),
        (
            {"n": 5, "min_prompt_chars": 10, "max_prompt_chars": 5},
            "min_prompt_chars: 10 is above max_prompt_chars",
        ),
        ({"n": 5, "max_tokens": 0}, "max_tokens: Input should be greater than 0"),
        ({"n": 5, "temperature": -0.1}, "temperature: Input should be greater than or equal to 0"),
    ],
)
def test_errors_name_the_setting(data, expected):
    assert expected in parse_error(**data)


def test_labels_map_fields_to_how_the_user_wrote_them():
    with pytest.raises(InputError, match=r"^--schedule #1: unknown schedule kind"):
        PlanSpec.parse(
            {"n": 1, "schedules": ["warp"]}, label=lambda path: path.replace("schedules[0]", "--schedule #1")
        )


def test_yaml_with_string_and_mapping_schedules(tmp_path, ultrachat):
    config = tmp_path / "plan.yaml"
    config.write_text(
        f"prompts: {ultrachat}\n"
        "n: 20\nseed: 4\nrate: 2\nmax_tokens: 64\nignore_eos: true\n"
        "schedules:\n"
        "  - fixed:interval=0.5\n"
        "  - {kind: bursty, size: 8, intra: 0.01, gap: 2.4}\n"
        "  - kind: trace\n    path: x.csv\n    lengths: false\n"
    )
    with pytest.raises(InputError, match=r"plan.yaml: schedules\[2\]: trace: x.csv: trace file not found"):
        PlanSpec.from_yaml(config)
    config.write_text(
        config.read_text().replace("  - kind: trace\n    path: x.csv\n    lengths: false\n", "")
    )
    spec = PlanSpec.from_yaml(config)
    assert spec.schedules == ["fixed:interval=0.5", "bursty:size=8,intra=0.01,gap=2.4"]
    assert (spec.n, spec.seed, spec.rate, spec.max_tokens, spec.ignore_eos) == (20, 4, 2.0, 64, True)
    overridden = PlanSpec.from_yaml(config, overrides={"n": 7, "schedules": ["poisson"]})
    assert overridden.n == 7 and overridden.schedules == ["poisson"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("n: [1, 2\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("n: 5\nspeed: 3\n", "plan.yaml: speed: unknown setting"),
        ("n: 5\nschedules:\n  - {size: 3}\n", "schedules[0]: needs kind"),
        ("n: -5\n", "plan.yaml: n: Input should be greater than 0"),
    ],
)
def test_bad_yaml(tmp_path, content, expected):
    config = tmp_path / "plan.yaml"
    config.write_text(content)
    with pytest.raises(InputError) as caught:
        PlanSpec.from_yaml(config)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_missing_yaml(tmp_path):
    with pytest.raises(InputError, match="plan spec file not found"):
        PlanSpec.from_yaml(tmp_path / "nope.yaml")
