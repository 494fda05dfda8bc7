"""Credentials never written down: a URL's userinfo (`http://user:token@host`) becomes `***@`, a
header named like a credential is never kept, and a known secret (the run's API key) becomes `***`
wherever it turns up in text taken from a server."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
REDACTED = "***@"
SECRET_REDACTED = "***"

# Stems that mark a header as carrying a credential wherever they occur in its name: authorization,
# proxy-authenticate, set-cookie, x-api-key, x-session-id, x-client-secret, ...
_SECRET_STEMS = ("auth", "cookie", "secret", "passw", "credential", "apikey", "api-key", "api_key",
                 "session", "signature", "bearer", "jwt", "csrf", "xsrf")  # fmt: skip
# Whole words of a name (split on "-", "_", "."): "x-goog-key", "x-access-token". "token" is a
# credential unless it is a unit ("x-time-per-token"); "tokens" (a count: "x-generated-tokens") is not.
_SECRET_WORDS = frozenset({"key", "token", "pass", "pwd", "sig"})


def redact_userinfo(text: str) -> str:
    """`text` with the userinfo of every URL in it replaced (command lines hold several)."""
    return _USERINFO.sub(REDACTED, text)


def is_secret_header(name: str) -> bool:
    """Whether a header's name says it may carry a credential (case-insensitive)."""
    lowered = name.lower()
    if any(stem in lowered for stem in _SECRET_STEMS):
        return True
    words = re.split(r"[-_.]", lowered)
    return any(w in _SECRET_WORDS and not (w == "token" and i > 0 and words[i - 1] == "per")
               for i, w in enumerate(words))  # fmt: skip


def redact_secret(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret` replaced by `***` (unchanged when there is none)."""
    return text.replace(secret, SECRET_REDACTED) if secret and secret in text else text


def redact_data(value: object, secret: str | None) -> object:
    """A JSON-like value (what a server said about itself) with URL userinfo and `secret` redacted in
    every string, keys included: a server's self-description is as untrusted as its headers."""
    if isinstance(value, str):
        return redact_secret(redact_userinfo(value), secret)
    if isinstance(value, dict):
        return {redact_data(k, secret): redact_data(v, secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v, secret) for v in value]
    return value
