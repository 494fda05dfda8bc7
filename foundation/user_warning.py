"""A warning for the user: one line on stderr, worded as the CLI words its errors.

Library code that finds something worth saying returns it; the command that called it says it here,
so plans and figures stay pure functions (the `traffic` package prints nothing itself).
"""

from __future__ import annotations

import sys


def warn(message: str) -> None:
    print(f"joulebench: warning: {message}", file=sys.stderr, flush=True)
