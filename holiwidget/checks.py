"""Checks of plain argument values that many entry points share, each with a one-line error."""

from __future__ import annotations

import numbers

from .errors import HoliwidgetError

__all__ = ["positive_int"]


def positive_int(value: object, name: str) -> int:
    """``value`` as an ``int`` if it is a whole number >= 1 (Python or numpy integer).

    Args:
        value: the value given.
        name: the argument's name, for the message.

    Returns:
        The value as an ``int``.

    Raises:
        HoliwidgetError: for booleans, floats, strings and numbers below 1.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise HoliwidgetError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
