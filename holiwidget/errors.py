"""What holiwidget tells its user: the one exception type for bad input, and warnings."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

__all__ = ["HoliwidgetError", "warn"]

_PACKAGE = str(Path(__file__).resolve().parent)


class HoliwidgetError(ValueError):
    """Bad input, reported in one line that names the problem and the fix.

    The command-line interface prints the message and exits with status 2; the Python API
    raises it as is. It subclasses :class:`ValueError` so callers can catch either.
    """


def warn(message: str) -> None:
    """A :class:`UserWarning` attributed to the first caller outside holiwidget (the line of
    the user's code that called the API, wherever inside the package it was raised)."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE):
        level += 1
        frame = frame.f_back
    warnings.warn(message, UserWarning, stacklevel=level)
