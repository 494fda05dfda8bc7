"""The root typer application; each command module in this package registers itself on it."""

import typer

app = typer.Typer(
    name="joulebench",
    help="Measure energy per request of LLM serving stacks under controlled arrival schedules.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
