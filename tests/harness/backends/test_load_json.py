"""A response body the protocol cannot read is a stream fault (one classified row), never a crash."""

from __future__ import annotations

import pytest

from harness.backends.base import StreamFault, load_json


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b'{"text": "caf\xe9"}', "can't decode byte 0xe9"), ('{"text": ', "Expecting value")],
)
def test_bytes_that_are_not_utf8_or_not_json_are_a_stream_fault(body: bytes | str, reason: str) -> None:
    with pytest.raises(StreamFault, match="malformed response") as fault:
        load_json(body, "response")
    assert reason in str(fault.value) and "\n" not in str(fault.value)


def test_control_characters_inside_strings_are_accepted() -> None:
    assert load_json('{"text": "a\x0bb"}', "chunk") == {"text": "a\x0bb"}
