"""Policies as users write them, `KIND:key=value,...`, parsed into the policies' parameter models.

The same style as schedules (`traffic.schedules`): `window:period=1`, `batch:k=8,max_wait=1`,
`token-bucket:rate=5,burst=10`, `concurrency-cap:c=4`, `slo-slack:ttft=2`,
`custom:class=pkg.mod:Cls,key=value`. A problem is one ValueError line naming the policy and the
parameter (callers add the flag or file); docs/shaping.md's tables come from `param_docs`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from traffic.shaping.concurrency_cap import ConcurrencyCapSpec
from traffic.shaping.custom_hook import CustomSpec, custom_params
from traffic.shaping.grouping import BatchSpec, WindowSpec
from traffic.shaping.policy_params import PolicySpec
from traffic.shaping.release_rates import PaceSpec, PassthroughSpec, TokenBucketSpec
from traffic.shaping.slo_slack import SloSlackSpec

POLICIES: dict[str, type[PolicySpec]] = {
    spec.kind: spec
    for spec in (
        PassthroughSpec,
        PaceSpec,
        TokenBucketSpec,
        WindowSpec,
        BatchSpec,
        ConcurrencyCapSpec,
        SloSlackSpec,
        CustomSpec,
    )
}


def parse_policy(text: str) -> PolicySpec:
    """Parse `KIND:key=value,...` into its validated model; raises ValueError with a one-line reason."""
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip().lower()
    model = POLICIES.get(kind)
    if model is None:
        raise ValueError(f"unknown policy {kind!r} (known: {', '.join(POLICIES)})")
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise ValueError(f"{kind}: expected key=value, got {item!r}")
        if key in pairs:
            raise ValueError(f"{kind}: parameter {key!r} given twice")
        pairs[key] = value
    if model is CustomSpec:
        data: dict[str, Any] = custom_params(pairs)
    else:
        unknown = [key for key in pairs if key not in model.model_fields]
        if unknown:
            raise ValueError(f"{kind}: unknown parameter {unknown[0]!r} ({_known(model)})")
        data = dict(pairs)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{kind}: {_describe(model, exc)}") from None


def _known(model: type[PolicySpec]) -> str:
    names = [_shown_name(name, model) for name in model.model_fields]
    return f"parameters: {', '.join(names)}" if names else "it takes no parameters"


def _describe(model: type[PolicySpec], exc: ValidationError) -> str:
    error = exc.errors()[0]
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a check across parameters, or the custom class's own
        return message
    field = str(error["loc"][0])
    if error["type"] == "missing":
        return f"missing parameter {field} ({_known(model)})"
    return f"{field}: {message[0].lower()}{message[1:]} (got {error.get('input')!r})"


def _shown_name(field: str, model: type[PolicySpec]) -> str:
    info = model.model_fields[field]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return str(extra.get("shown_name", info.alias or field))


def _shown_default(value: object) -> str:
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def param_docs() -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """Per policy: (kind, summary, [(parameter, default, description)]), for docs and help."""
    docs = []
    for kind, model in POLICIES.items():
        rows = []
        for field, info in model.model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if "shown_default" in extra:
                default = str(extra["shown_default"])
            else:
                default = "required" if info.is_required() else _shown_default(info.default)
            rows.append((_shown_name(field, model), default, info.description or ""))
        docs.append((kind, model.summary, rows))
    return docs
