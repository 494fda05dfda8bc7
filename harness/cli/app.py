"""The root typer application; each command module in this package registers itself on it."""

import functools
from collections.abc import Callable
from typing import Any

import typer
from rich.columns import Columns
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from typer import core

app = typer.Typer(
    name="joulebench",
    help="Measure energy per request of LLM serving stacks under controlled arrival schedules.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _HelpTable(Table):
    """typer's help panels, whose option rows are names (long, short, --no- long and short), the value's
    type and the help. typer lets rich shrink every column alike, which at 80 columns cuts flag names
    ("--min-prompt-cha…"); here the names never wrap (the help column gives way) and a word too long
    for its column folds onto the next line instead of ending in "…"."""

    def add_row(self, *renderables: RenderableType | None, **kwargs: Any) -> None:
        for cell in renderables:
            # The help cell is a Columns of texts (help, default, ...), laid out in a grid of its own.
            for text in cell.renderables if isinstance(cell, Columns) else []:
                if isinstance(text, Text):
                    text.overflow = "fold"
        super().add_row(*renderables, **kwargs)
        for column in self.columns:
            column.overflow = "fold"
        for column in self.columns[:-2]:
            column.no_wrap = True


def _fitting(format_help: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(format_help)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        # Imported here, as typer does: rich's help rendering costs every other start ~50 ms.
        from typer import rich_utils

        rich_utils.Table = _HelpTable  # type: ignore[misc]
        format_help(*args, **kwargs)

    return wrapper


_typer_display_type = core.TyperOption.display_type_rich


def _display_type(option: core.TyperOption, ctx: Any) -> str | None:
    """A switch takes no value, so its help shows none (typer shows "<bool>")."""
    return None if option.is_flag else _typer_display_type(option, ctx)


core.TyperCommand.format_help = _fitting(core.TyperCommand.format_help)  # type: ignore[method-assign]
core.TyperGroup.format_help = _fitting(core.TyperGroup.format_help)  # type: ignore[method-assign]
core.TyperOption.display_type_rich = _display_type  # type: ignore[method-assign,assignment]


def _version(value: bool) -> None:
    if value:
        from harness import __version__

        typer.echo(f"joulebench {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Measure energy per request of LLM serving stacks under controlled arrival schedules."""
