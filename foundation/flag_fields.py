"""Config fields that declare their command-line flag, and choices checked against a Literal.

A model (a dataclass) declares each flag on the field that holds its value and default, with `flag`;
harness/cli/_typer_flags.py builds the typer options from them, so a default, a help text or a list of
choices is written once. `check_choice` validates a value against the same Literal the help shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any, TypeVar, get_args

from foundation.errors import InputError

T = TypeVar("T")


def flag(default: T, usage: str, help: str, parse: Callable[[str], T] | None = None) -> T:
    """A dataclass field that is a flag: `usage` is "--name METAVAR" (without a metavar, a Literal shows
    its choices); `parse` turns the flag's text into the value where the field's type cannot."""
    return field(default=default, metadata={"flag": usage, "help": help, "parse": parse})


def check_choice(name: str, value: object, choices: Any) -> None:
    """InputError unless `value` is one of the Literal `choices` (the list the flag's help shows)."""
    allowed = get_args(choices)
    if value not in allowed:
        raise InputError(f"{name} {value!r}: expected one of {', '.join(allowed)}")
