"""Run options are checked in one place, with the flag's name in the message."""

from __future__ import annotations

import time

import pytest

from foundation.errors import InputError
from harness.runner import RunOptions


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_rate": 0}, "--max-rate: must be > 0"),
        ({"timeout_s": -1}, "--timeout: must be > 0"),
        ({"time_limit_s": 0}, "--time-limit: must be > 0"),
        ({"grace_s": -1}, "--grace: must be >= 0"),
        ({"arm_gap_s": -0.1}, "--arm-gap: must be >= 0"),
        ({"max_concurrency": 0}, "--max-concurrency: must be >= 1"),
        ({"warmup": -1}, "--warmup: must be >= 0"),
        ({"transport": "curl"}, "--transport 'curl'"),
        ({"start_at_epoch_s": time.time() - 5}, "s in the past"),
        ({"start_at_epoch_s": time.time() * 1000}, "not milliseconds"),
        ({"start_at_epoch_s": time.time() + 30 * 86400}, "more than a week ahead"),
    ],
)
def test_bad_options(options: dict, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        RunOptions(**options).validate()


def test_good_options() -> None:
    options = RunOptions(start_at_epoch_s=time.time() + 60, max_rate=0.5, max_concurrency=2).validate()
    assert options.as_manifest()["shard"] == "0/1"
