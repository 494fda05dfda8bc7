"""docs/shaping.md's table of `joulebench shape` flags matches the flags (names, metavars, defaults)."""

from __future__ import annotations

import re

from joulebench_testkit import REPO

from harness.cli._typer_flags import model_flags
from harness.shaping_proxy.proxy_config import ProxyConfig


def test_every_flag_is_documented_with_its_default() -> None:
    page = (REPO / "docs" / "shaping.md").read_text()
    section = page.split("### Flags", 1)[1].split("\n### ", 1)[0]
    rows = dict(re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", section, re.M))
    flags = model_flags(ProxyConfig)
    assert list(rows) == [f"{flag.long} {flag.metavar}" for flag in flags]
    for flag in flags:
        shown = rows[f"{flag.long} {flag.metavar}"].strip()
        if flag.default is None:
            expected = "required" if "Required." in flag.help else "none"
        else:
            expected = str(flag.default)
        assert shown == expected, flag.long
