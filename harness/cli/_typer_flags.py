"""Typer options declared once and added to a command by a decorator: from a table or from models.

A table is a list of `OptionSpec`s (harness/cli/plan_flags.py). A model is a dataclass whose fields
declare their flag next to the default every caller shares (foundation.flag_fields.flag), in the field's
metadata: "flag", the usage "--name METAVAR" (None: deliberately no flag; without a metavar, a
Literal's choices); "help"; "parse", text -> value where int, float, Path, str and Literal fields need
none. A field holding a nested model (a dataclass, no "flag" key) contributes that model's flags. A
model's class attribute FLAG_PANEL names the help panel of its flags.

Every value but a switch reaches the command as text and is converted here, so a bad number is one
InputError line naming the flag (click's own type errors name the parameter their own way). Choices
are checked by the models' validation, which reads them from the Literal the help shows.
"""

import dataclasses
import functools
import inspect
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import typer

from foundation.errors import InputError

TEXT = str | None
T = TypeVar("T")
Command = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    decls: tuple[str, ...]  # "--name" (and a short "-n"), or "--name/--no-name" for a switch
    help: str
    panel: str
    kind: Any = TEXT  # what typer converts to: text, or bool for a switch
    metavar: str | None = None
    default: Any = None

    @classmethod
    def of(cls, usage: str, help: str, panel: str, **rest: Any) -> "OptionSpec":
        """The flag of a usage: its names, then its metavar if any ("--n -n INT")."""
        words = usage.split()
        metavar = next((word for word in words if not word.startswith("-")), None)
        return cls(
            tuple(word for word in words if word.startswith("-")), help, panel, metavar=metavar, **rest
        )

    @property
    def long(self) -> str:
        """--stream/--no-stream -> --stream."""
        return self.decls[0].split("/")[0]

    @property
    def name(self) -> str:
        return _parameter_name(self.decls[0])

    def parameter(self) -> inspect.Parameter:
        option = typer.Option(*self.decls, help=self.help, metavar=self.metavar, rich_help_panel=self.panel)
        return inspect.Parameter(
            self.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=self.default,
            annotation=Annotated[self.kind, option],
        )


def add_flags(
    func: Command, flags: Sequence[OptionSpec], receive: str, collect: Callable[[dict[str, Any]], Any]
) -> Command:
    """`func` as typer sees it with `flags` after its own options; its parameter `receive` gets
    `collect({flag name: value})` instead of being an option itself."""
    signature = inspect.signature(func, eval_str=True)
    if receive not in signature.parameters:
        raise TypeError(f"{func.__name__} must take a `{receive}` parameter")
    kept = [p for p in signature.parameters.values() if p.name != receive]
    added = [flag.parameter() for flag in flags]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {flag.name: kwargs.pop(flag.name) for flag in flags}
        return func(*args, **kwargs, **{receive: collect(values)})

    # typer reads the parameters from the signature; the annotations are already evaluated here.
    wrapper.__signature__ = signature.replace(parameters=[*kept, *added])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*kept, *added]}
    del wrapper.__wrapped__  # keep inspect from looking past the new signature
    return wrapper


class FlagValues:
    """The parsed flags of some models, turned into those models by `build`."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    def build(self, model: type[T], **fixed: Any) -> T:
        """`model` from its flags (InputError naming the flag on a bad value); `fixed`: fields set
        otherwise, and fields that are no flags keep their defaults."""
        kwargs = dict(fixed)
        for field, kind in _declared(model):
            if "flag" not in field.metadata:
                kwargs[field.name] = self.build(kind)
            elif field.metadata["flag"] is not None:
                decl = field.metadata["flag"].split()[0]
                value = self._values[_parameter_name(decl)]
                kwargs[field.name] = _convert(decl, field.metadata["parse"], kind, value)
        return model(**kwargs)


def model_options(*models: type[Any]) -> Callable[[Command], Command]:
    """Decorator: the flags of `models` on a typer command, which receives them as `flags: FlagValues`."""
    flags = [flag for model in models for flag in model_flags(model)]
    return lambda func: add_flags(func, flags, "flags", FlagValues)


def model_flags(model: type[Any]) -> list[OptionSpec]:
    """The flags declared on the fields of `model`, in field order, nested models' flags in place."""
    flags = []
    for field, kind in _declared(model):
        if "flag" not in field.metadata:
            flags += model_flags(kind)
        elif field.metadata["flag"] is not None:
            default = (
                field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
            )
            typed = bool if kind is bool else TEXT
            flag = OptionSpec.of(
                field.metadata["flag"], field.metadata["help"], model.FLAG_PANEL, kind=typed, default=default
            )
            flags.append(flag if flag.metavar else dataclasses.replace(flag, metavar=choices_metavar(kind)))
    return flags


def _declared(model: type[Any]) -> Iterator[tuple[dataclasses.Field[Any], Any]]:
    """(field, resolved type) of every field of a model; each must declare "flag" or hold a model."""
    hints = get_type_hints(model)
    for field in dataclasses.fields(model):
        if "flag" not in field.metadata and not dataclasses.is_dataclass(hints[field.name]):
            raise TypeError(
                f"{model.__name__}.{field.name}: declare its flag in metadata ('flag': None for none)"
            )
        yield field, hints[field.name]


def _convert(decl: str, parse: Callable[[str], Any] | None, kind: Any, value: Any) -> Any:
    if value is None or kind is bool:
        return value
    if parse:
        return parse(value)
    base = _optional_of(kind)
    if base in (int, float):
        try:
            return base(value)
        except ValueError:
            expected = "an integer" if base is int else "a number"
            raise InputError(f"{decl}: expected {expected}, got {value!r}") from None
    return Path(value) if base is Path else value


def choices_metavar(kind: Any) -> str | None:
    """A Literal's choices as a metavar: time|tokens."""
    base = _optional_of(kind)
    return "|".join(get_args(base)) if get_origin(base) is Literal else None


def _optional_of(kind: Any) -> Any:
    """float | None -> float."""
    if get_origin(kind) in (Union, types.UnionType):
        (kind,) = [arg for arg in get_args(kind) if arg is not type(None)]
    return kind


def _parameter_name(decl: str) -> str:
    """The Python parameter typer sees: --max-rate -> max_rate."""
    return decl.split("/")[0].removeprefix("--").replace("-", "_")
