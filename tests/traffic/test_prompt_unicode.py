"""Prompt text that is not valid Unicode (a lone surrogate from a JSON escape such as \\ud800) is refused
when the file is read, naming the file, the record and the field, instead of failing when the plan is
written."""

from __future__ import annotations

import numpy as np
import pytest

from foundation.errors import InputError
from traffic.prompts import PromptOptions, load_source, parse_source


def load(path, demand=2):
    return load_source(PromptOptions(source=parse_source(str(path))), demand, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("p.jsonl", '{"prompt": "ok"}\n{"prompt": "hi \\ud800 there"}\n', r"line 2: prompt: .*\\ud800"),
        ("p.jsonl", '{"prompt": "ok", "\\udfff": 1}\n', r"line 1: \\udfff \(the key\): .*\\udfff"),
        (
            "p.json",
            '[{"prompt": "ok"}, {"messages": [{"role": "user", "content": "a\\udc00"}]}]',
            r"item 1: messages\[0\]\.content: .*\\udc00",
        ),
    ],
)
def test_lone_surrogate_is_a_one_line_error(tmp_path, name, text, where):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=rf"^{path}: {where}.*not valid Unicode text$"):
        load(path)


def test_a_surrogate_pair_escape_is_a_valid_character(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "smile \\ud83d\\ude00"}\n{"prompt": "plain"}\n')
    source = load(path)
    assert source is not None  # read without complaint: the pair is one character, U+1F600
