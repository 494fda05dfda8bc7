"""Server command lines and environments as the run manifest records them: parsed, secrets redacted.

A manifest must say exactly how the server was configured (every flag changes energy per request),
but it is shared with other people: API keys and Hugging Face tokens never go into it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

REDACTED = "<redacted>"

# A flag or variable whose name contains one of these words holds a secret.
_SECRET = re.compile(r"token|key|secret|passw|credential|auth", re.IGNORECASE)

# Environment variables that shape how a server runs on the GPU (and hold no secret by themselves).
_ENV_KEPT = re.compile(
    r"^(VLLM_|CUDA_|NVIDIA_|NCCL_|PYTORCH_|TORCH_|OMP_|HF_HUB_OFFLINE$|HF_HUB_ENABLE_HF_TRANSFER$|"
    r"TRANSFORMERS_OFFLINE$|MAX_|NUM_SHARD$|QUANTIZE$|DTYPE$|MODEL_ID$|PREFIX_CACHING$|ATTENTION$|USE_)"
)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET.search(name))


def redact_argv(argv: Sequence[str]) -> list[str]:
    """The command line with every secret-looking flag's value replaced (`--api-key X`, `--x-token=X`)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if arg.startswith("-") and is_secret_name(arg):
            name, eq, _ = arg.partition("=")
            if eq:
                out.append(f"{name}={REDACTED}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(arg)
    return out


def parse_flags(args: Sequence[str]) -> dict[str, object]:
    """`--name value`, `--name=value` and bare `--switch` (True) into a dict keyed by the flag as written.

    Positional arguments go under `"_positional"`; a repeated flag keeps all its values in a list.
    Values are kept as strings: the manifest records what the server was given, not our reading of it.
    """
    flags: dict[str, object] = {}
    positional: list[str] = []

    def put(name: str, value: object) -> None:
        if name in flags:
            previous = flags[name]
            flags[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            flags[name] = value

    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and not _is_number(arg) and arg != "-":
            name, eq, value = arg.partition("=")
            if eq:
                put(name, value)
            elif i + 1 < len(args) and (not args[i + 1].startswith("-") or _is_number(args[i + 1])):
                put(name, args[i + 1])
                i += 1
            else:
                put(name, True)
        else:
            positional.append(arg)
        i += 1
    if positional:
        flags["_positional"] = positional
    return flags


def redact_env(env: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    """The serving-relevant variables of an environment (a mapping or Docker's `["K=V", ...]`), redacted."""
    items = env.items() if isinstance(env, Mapping) else (entry.partition("=")[::2] for entry in env)
    kept: dict[str, str] = {}
    for name, value in items:
        if not _ENV_KEPT.match(name):
            continue
        kept[name] = REDACTED if is_secret_name(name) else value
    return dict(sorted(kept.items()))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
