"""The ``holiwidget`` command line.

::

    holiwidget explain IMAGE... --model NAME --output FILE.nc [--figure FILE.png] [...]
    holiwidget evaluate --images DIR --annotations CSV --model NAME --output RESULTS.zarr [...]
    holiwidget sweep --images DIR --annotations CSV --model NAME --output SWEEP.zarr [...]
    holiwidget app [--model NAME] [--weights W] [--image NAME|PATH] [--data DIR] [--port N]
    holiwidget lab [--model NAME] [--weights W] [--port N] [--no-browser] [-- JUPYTER_ARGS]

Bad input is reported as one line ``holiwidget: error: <message>`` on stderr with exit
status 2, never as a traceback. Outputs are written whole or not at all. Subcommands are
the modules named in :data:`_COMMANDS`; each adds its parser and names the function that
runs it. Only the module of the command that runs is imported, so that ``holiwidget lab``
and ``holiwidget app`` (servers whose kernels do the work) start without loading torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from typing import NoReturn

from ..errors import HoliwidgetError
from .options import add_verbose

__all__ = ["main"]

log = logging.getLogger(__name__)

PROG = "holiwidget"
#: Exit status for bad input (argparse's convention).
EXIT_USAGE = 2
#: Exit status after Ctrl-C.
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    """An argparse error, raised instead of argparse's print-and-exit."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises on errors, so :func:`main` reports them in one line."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"


#: Subcommands, each a module of this package whose ``add_command`` adds its parser (with
#: ``run`` set) to the subparsers action.
_COMMANDS = ("explain", "evaluate", "sweep", "lab", "app")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``holiwidget`` argument parser, with one subparser per command (only ``command``'s
    when one is named)."""
    parser = _Parser(
        prog=PROG,
        description="Holistic-CAM class-activation maps at every depth of a CNN.",
    )
    add_verbose(parser, default=False)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    for name in _COMMANDS:
        if command in (None, name):
            importlib.import_module(f"{__name__}.{name}").add_command(commands)
    return parser


def _command(argv: list[str]) -> str | None:
    """The command ``argv`` names (the first argument that is not an option), if it is one."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in _COMMANDS else None


def _run(args: argparse.Namespace) -> int:
    """Run a command; Python warnings become one-line log messages instead of source dumps."""
    with warnings.catch_warnings(record=True) as caught:
        try:
            return args.run(args)
        finally:
            for w in caught:
                log.warning("%s", w.message)


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for bad input (reported in one line on stderr),
        130 after Ctrl-C.
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command(argv))
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0

    logger = logging.getLogger("holiwidget")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if args.verbose else logging.WARNING)
    logger.propagate = False
    try:
        return _run(args)
    except HoliwidgetError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
