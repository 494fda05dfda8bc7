"""Profiles: the shipped files load and record their source; bad profiles are one-line input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foundation.errors import InputError
from harness.mock.profile import DEFAULT_PROFILE, builtin_profiles, load_profile, parse_profile
from harness.mock.token_text import LINE_BREAKERS, PromptCounter, token_texts

TOKENIZER = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "models" / "Llama-3-tokenizer"


def test_builtin_profiles_load_and_the_fitted_one_records_its_source():
    assert {DEFAULT_PROFILE, "synthetic-fast"} <= set(builtin_profiles())
    fitted = load_profile(DEFAULT_PROFILE)
    source = fitted.source
    assert len(source["calibration"]["sha256"]) == 64 and source["calibration"]["file"].endswith(".json")
    assert (
        source["method"]
        and source["assumptions"]
        and source["command"].startswith("python -m harness.mock.calibrate")
    )
    assert {row["batch"] for row in source["fit"]["decode"]} >= {1, 32, 64, 256}
    assert fitted.power.idle_w == pytest.approx(119.82)
    assert "synthetic" in load_profile("synthetic-fast").source


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"scheduler": {"max_num_seqs": 0}}, "scheduler.max_num_seqs"),
        ({"power": {"busy_w": 10.0}}, "power"),
        ({"gpu": {"power_limit_w": "lots"}}, "gpu.power_limit_w"),
        ({"faults": {"error_rate": 2}}, "faults.error_rate"),
        ({"unknown_section": {}}, "unknown_section"),
        ({"schema_version": 7}, "schema_version"),
    ],
)
def test_bad_profiles_name_the_field(change, where):
    data = load_profile(DEFAULT_PROFILE).model_dump(mode="json")
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
    with pytest.raises(InputError) as error:
        parse_profile(json.dumps(data), origin="my-profile.json")
    message = str(error.value)
    assert message.startswith("my-profile.json: ") and where.split(".")[0] in message and "\n" not in message


def test_profile_paths_and_unknown_names(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(load_profile("synthetic-fast").model_dump_json())
    assert load_profile(path).name == "synthetic-fast"
    with pytest.raises(InputError, match="neither a built-in profile"):
        load_profile("no-such-profile")
    path.write_text("{oops")
    with pytest.raises(InputError, match="not valid JSON"):
        load_profile(path)


def test_prompt_token_estimate_is_documented_rule():
    counter = PromptCounter()
    assert counter.text("abcd") == 1 and counter.text("abcde") == 2 and counter.text("") == 1
    assert counter.text("é" * 4) == 2  # bytes, not characters
    assert counter.chat(["abcd", "abcdefgh"]) == (1 + 4) + (2 + 4) + 3


@pytest.mark.skipif(
    not (TOKENIZER / "tokenizer.json").is_file(), reason="Llama-3 tokenizer not in ../shared/data"
)
def test_prompt_tokens_with_a_real_tokenizer():
    counter = PromptCounter(TOKENIZER / "tokenizer.json")
    assert counter.text("Hello") == 2  # <|begin_of_text|> + "Hello"
    assert counter.text("Measure energy per request, please.") == 1 + 7
    assert counter.source == "tokenizer: tokenizer.json"


def test_bad_tokenizer_file_is_an_input_error(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{}")
    with pytest.raises(InputError, match="--tokenizer"):
        PromptCounter(bad)


def test_token_texts_are_deterministic_and_linebreaks_are_optional():
    assert token_texts(1, 5, 0, 50, 0.0) == token_texts(1, 5, 0, 50, 0.0) != token_texts(2, 5, 0, 50, 0.0)
    assert token_texts(1, 5, 10, 20, 0.0) == token_texts(1, 5, 0, 20, 0.0)[10:]
    plain = "".join(token_texts(1, 5, 0, 500, 0.0))
    assert not any(c in plain for c in LINE_BREAKERS)
    broken = token_texts(1, 5, 0, 500, 0.2)
    share = sum(any(c in t for c in LINE_BREAKERS) for t in broken) / len(broken)
    assert 0.12 < share < 0.28
