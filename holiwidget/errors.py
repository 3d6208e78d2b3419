"""The one exception type holiwidget raises for bad input."""

from __future__ import annotations


class HoliwidgetError(ValueError):
    """Bad input, reported in one line that names the problem and the fix.

    The command-line interface prints the message and exits with status 2; the Python API
    raises it as is. It subclasses :class:`ValueError` so callers can catch either.
    """
