"""Credentials never written down: a URL's userinfo (`http://user:token@host`) becomes `***@`."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
REDACTED = "***@"


def redact_userinfo(text: str) -> str:
    """`text` with the userinfo of every URL in it replaced (command lines hold several)."""
    return _USERINFO.sub(REDACTED, text)
