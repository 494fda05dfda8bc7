"""`joulebench` entry point.

Every module in this package except `app` and private `_*` helpers holds one command (or one command
group) and registers it on `harness.cli.app.app` when imported. `main` turns `InputError` into a
one-line message.
"""

import importlib
import pkgutil
import sys

import typer

from traffic.errors import InputError

from .app import app


def _load_commands(argv: list[str]) -> None:
    # Import only the command being run (module name = command name with '_' for '-'): the
    # mock server and the sidecar start in tests many times, and the others import pandas/scipy.
    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name != "app" and not m.name.startswith("_")]
    wanted = argv[0].replace("-", "_") if argv else ""
    for name in [wanted] if wanted in names else names:
        importlib.import_module(f"{__name__}.{name}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    _load_commands(argv)
    command = typer.main.get_command(app)
    try:
        # standalone_mode=False lets bad input surface here as InputError instead of a traceback.
        status = command.main(args=argv, prog_name="joulebench", standalone_mode=False)
    except InputError as exc:
        print(f"joulebench: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("joulebench: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:
        # typer's (vendored click) usage errors: one line like InputError; `--help` shows the usage.
        # A group called without a command has printed its help already and has no message.
        message = exc.format_message() or "no command given (the help above lists them)"
        print(f"joulebench: error: {message}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    if isinstance(status, int) and status:
        sys.exit(status)
