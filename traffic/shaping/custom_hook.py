"""`custom`: a user-written policy, a Python class named `module:Class`, driven like the built-in ones.

The class is imported when the spec is parsed, checked for every method of the interface
(`policy_api.INTERFACE`), and constructed once as `Class(params, rng)` to check its parameters, so
a wrong name, a missing method or a bad parameter is a one-line error before anything runs. Its
parameters are the spec's other keys, passed as strings: the class parses and checks them itself
(a ValueError from its constructor becomes the one-line error).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, PrivateAttr, model_validator

from traffic.shaping.policy_api import INTERFACE, Policy
from traffic.shaping.policy_params import PolicySpec, name_part


def load_policy_class(target: str) -> type[Any]:
    """The class `module:Class` names, if it has every method of the interface; else one-line ValueError."""
    module_name, sep, class_name = target.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"class={target}: expected module:Class (e.g. mypolicies.hold:HoldTwo)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"class={target}: no module named {exc.name!r} (is it on PYTHONPATH?)") from None
    except Exception as exc:  # the user's module failed while importing: say how, in one line
        raise ValueError(f"class={target}: importing {module_name} failed: {_one_line(exc)}") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ValueError(f"class={target}: module {module_name} has no class {class_name!r}")
    missing = [method for method in INTERFACE if not callable(getattr(cls, method, None))]
    if missing:
        raise ValueError(
            f"class={target}: not a shaping policy, it lacks {', '.join(missing)} "
            f"(a policy implements {', '.join(INTERFACE)})"
        )
    return cls


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


class CustomSpec(PolicySpec):
    kind: ClassVar[str] = "custom"
    summary: ClassVar[str] = (
        "a user-written policy: the class `module:Class`, constructed as Class(params, rng) with the "
        "spec's other keys as strings (see 'A policy of your own' below)"
    )

    target: str = Field(alias="class", description="the policy class as module:Class, importable")
    params: dict[str, str] = Field(
        default_factory=dict,
        description="every other key=value, passed to the class's constructor as strings",
        json_schema_extra={"shown_name": "KEY=VALUE", "shown_default": "none"},
    )
    _cls: type[Any] = PrivateAttr()

    @model_validator(mode="after")
    def _load(self) -> CustomSpec:
        self._cls = load_policy_class(self.target)
        self._construct(np.random.default_rng(0))  # only to check the parameters now
        return self

    def _construct(self, rng: np.random.Generator) -> Policy:
        try:
            policy: Policy = self._cls(dict(self.params), rng)
        except ValueError as exc:
            raise ValueError(f"class={self.target}: {' '.join(str(exc).split())}") from None
        except Exception as exc:  # the user's constructor broke: one line, never a traceback
            raise ValueError(f"class={self.target}: constructing it failed: {_one_line(exc)}") from None
        return policy

    def create(self, rng: np.random.Generator) -> Policy:
        return self._construct(rng)

    @property
    def name(self) -> str:
        parts = ["custom", name_part(self.target.rpartition(":")[2])]
        parts += [f"{name_part(key)}{name_part(value)}" for key, value in self.params.items()]
        return "-".join(parts)


def custom_params(pairs: Mapping[str, str]) -> dict[str, Any]:
    """The model's input from a spec's key=value pairs: `class`, and every other key as a parameter."""
    rest = {key: value for key, value in pairs.items() if key != "class"}
    return {**({"class": pairs["class"]} if "class" in pairs else {}), "params": rest}
