"""The ``splittracer`` command: a thin layer over the library.

Each command parses options, calls a library function and renders the
result; :func:`main` turns SplitTracer errors into one paragraph on stderr
and the error's exit code (2 for a user's mistake), never a traceback.

Command modules import the library inside each command (types for
annotations under ``TYPE_CHECKING``): the command line itself loads only
typer and rich, so ``--help`` and the commands that read files answer at
once, and torch, gRPC or asyncssh load only for the commands that use them
(``tests/unit/test_startup.py`` checks it).
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from ..errors import SplitTracerError
from ..version import __version__
from . import agent as agent_commands
from . import compare as _compare  # noqa: F401  (adds 'results compare')
from . import device as device_commands
from . import model as model_commands
from . import plan as plan_commands
from . import report as report_command
from . import results as results_commands
from . import run as run_command
from . import testbed as testbed_commands
from . import workspace as workspace_commands
from ._render import console, print_error, settings

app = typer.Typer(
    name="splittracer",
    help="Cooperative-inference and split-computing experiments on real edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        console.print(f"splittracer {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit"),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show third-party output and log messages on stderr")
    ] = False,
) -> None:
    settings.debug = debug
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")


app.add_typer(agent_commands.app, name="agent")
app.add_typer(device_commands.app, name="device")
app.add_typer(model_commands.app, name="model")
app.add_typer(results_commands.app, name="results")
app.add_typer(testbed_commands.app, name="testbed")
app.add_typer(workspace_commands.app, name="experiment")
app.command("init")(workspace_commands.init)
app.command("run")(run_command.run)
app.command("rerun")(run_command.rerun)
plan_commands.register(app)
app.command("report")(report_command.report)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except SplitTracerError as exc:
        print_error(exc.render())
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        print_error("aborted")
        return 130
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    except Exception as exc:
        # Usage errors (missing argument, bad option) arrive here in standalone_mode=False;
        # typer may vendor its own click, so recognise them by shape, not by class.
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        raise
    return 0


def run() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())
