"""`joulebench` entry point.

Every `<command>_command.py` in this package holds one command (or one command group) and registers it
on `harness.cli.app.app` when imported; the other modules are what they share. `main` turns
`InputError` into a one-line message.
"""

import importlib
import io
import pkgutil
import sys

import typer

from foundation.errors import InputError
from harness.cli.app import app

COMMAND_SUFFIX = "_command"


def _load_commands(argv: list[str]) -> None:
    # Import only the command being run (`mock-server` is mock_server_command.py): the mock server
    # and the sidecar start in tests many times, and the other commands import pandas and scipy.
    commands = {
        m.name.removesuffix(COMMAND_SUFFIX): m.name
        for m in pkgutil.iter_modules(__path__)
        if m.name.endswith(COMMAND_SUFFIX)
    }
    wanted = argv[0].replace("-", "_") if argv else ""
    for module in [commands[wanted]] if wanted in commands else commands.values():
        importlib.import_module(f"{__name__}.{module}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    # Linux paths may hold bytes that are not UTF-8 (arguments carry them as lone surrogates): print
    # them escaped rather than fail on them, in error lines and in paths the commands echo.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
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
    except OSError as exc:
        # The last line of defence: a path no command checked (the known ones are InputErrors where
        # they are first touched) is still one line, naming it, not a traceback.
        print(f"joulebench: error: {_os_error(exc)}", file=sys.stderr)
        sys.exit(2)
    except UnicodeEncodeError as exc:
        # A value with a byte that is not UTF-8 (a lone surrogate) reached code that must encode it.
        where = f"{exc.object!r}: holds a byte that is not valid UTF-8 (at position {exc.start})"
        print(f"joulebench: error: {where}", file=sys.stderr)
        sys.exit(2)
    if isinstance(status, int) and status:
        sys.exit(status)


def _os_error(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return reason if exc.filename is None else f"{exc.filename}: {reason}"
