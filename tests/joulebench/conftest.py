"""The smallest measured run the embedded default makes: one arm of three short requests, short idle
windows, no warm-up, its output kept out of the test log (a few seconds, most of it the servers starting)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console


@pytest.fixture(scope="session")
def tiny() -> dict[str, Any]:
    return {
        "schedules": ["fixed:interval=0.05"],
        "n": 3,
        "max_tokens": 4,
        "idle": 0.2,
        "warmup": 0,
        "progress": False,
        "console": Console(file=io.StringIO()),
    }
