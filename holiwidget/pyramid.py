"""The input pyramid: its sides (the paper's eight scales by default) and its input sizes."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from .errors import HoliwidgetError

__all__ = ["PYRAMID_SIDES", "check_scales", "pyramid_sizes"]

#: Side lengths of the input pyramid for a 224 x 224 input: range(224, 1000, 100).
PYRAMID_SIDES = tuple(range(224, 1000, 100))


def check_scales(scales: Sequence[int] | None) -> tuple[int, ...]:
    """The pyramid's sides, checked: positive integers, no duplicates, the fundamental first.

    None gives the paper's pyramid (:data:`PYRAMID_SIDES`). The first side is the
    fundamental scale (the input size) and must be the smallest; the others may come in any
    order and are kept in ascending order.

    Raises:
        HoliwidgetError: in one line, with the default.
    """
    if scales is None:
        return PYRAMID_SIDES
    default = ",".join(map(str, PYRAMID_SIDES))
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or not scales:
        raise HoliwidgetError(
            f"scales must be a non-empty list of pyramid sides such as (224, 324), got "
            f"{scales!r}; the default is {default}"
        )
    bad = [s for s in scales if isinstance(s, bool) or not isinstance(s, numbers.Integral)]
    if bad or any(s < 1 for s in scales):
        raise HoliwidgetError(
            f"scales must be positive integers (pixels), got {list(scales)!r}; the default "
            f"is {default}"
        )
    sides = [int(s) for s in scales]
    if len(set(sides)) != len(sides):
        raise HoliwidgetError(f"scales {sides} repeat a side; give each side once")
    if sides[0] != min(sides):
        raise HoliwidgetError(
            f"scales must start with the fundamental scale (the input size, the smallest "
            f"side), got {sides}; e.g. {sorted(sides)}"
        )
    return (sides[0], *sorted(sides[1:]))


def pyramid_sizes(
    height: int, width: int, scales: Sequence[int] | None = None
) -> list[tuple[int, int]]:
    """The pyramid's input sizes for a (height, width) input, fundamental scale first.

    ``scales`` are sides in the frame of the fundamental scale (default the paper's eight,
    224, 324, ..., 924, for a 224 x 224 input). Another input size scales them by the same
    factors ``s / scales[0]``; the FSD kernels are used as given (for an input of side
    ``s0`` the paper's kernels correspond to ``m * s0 / 224`` and ``b * s0 / 224``, rounded
    to odd numbers).
    """
    sides = check_scales(scales)
    return [(round(height * s / sides[0]), round(width * s / sides[0])) for s in sides]
