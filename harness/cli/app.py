"""The root typer application; each command module in this package registers itself on it."""

import typer

app = typer.Typer(
    name="joulebench",
    help="Measure energy per request of LLM serving stacks under controlled arrival schedules.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
