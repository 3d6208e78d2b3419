"""The settings a sensitivity sweep scores: a grid of denoising parameters and pyramids.

A sweep varies Holistic-CAM's fundamental-scale denoising (tau, the median kernel m, the
box kernel b) and the input pyramid (a list of scale sets). Its grid is either

- ``"full"``: every combination of scale set x tau x m x b, or
- ``"star"``: the m x b plane at the reference tau and scale set, each other tau at the
  reference kernels, and each other scale set at the reference tau and kernels (the
  layout of the paper's tables, at a fraction of the cost).

The reference values are the defaults (tau 0.5, m 51, b 91, the paper's eight scales) when
the lists hold them, else each list's first value. Besides the grid, every scale set gets
the extra settings: ``default`` (0.5 / 51 / 91, what paired differences are taken from),
``off`` (no denoising, H = PHA) and, for the filter ablation of the paper's Table 1,
``no filters`` (m = b = 1: a kernel of 1 is the identity), ``median only`` (b = 1) and
``box only`` (m = 1).
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import HoliwidgetError
from ..methods.holistic import Denoising
from ..pyramid import PYRAMID_SIDES, check_scales

__all__ = [
    "DESIGNS",
    "EXTRAS",
    "KERNELS",
    "Grid",
    "as_sequence",
    "extra_settings",
    "parse_scale_sets",
    "parse_values",
    "scale_label",
]

#: The kernels of the paper's Tables 2-5 (m and b).
KERNELS = (31, 51, 71, 91, 111, 131)
#: The ways to combine the lists: every combination, or the paper's tables (see the module).
DESIGNS = ("full", "star")
#: Optional extra settings: denoising off, and the filter ablation of Table 1.
EXTRAS = ("off", "ablation")


def extra_settings(extras: Sequence[str]) -> dict[str, Denoising | None]:
    """The extra settings of a sweep by name (None: denoising off); ``default`` always."""
    out: dict[str, Denoising | None] = {"default": Denoising()}
    if "off" in extras:
        out["off"] = None
    if "ablation" in extras:
        out["no filters"] = Denoising(median=1, box=1)
        out["median only"] = Denoising(box=1)
        out["box only"] = Denoising(median=1)
    return out


def scale_label(sides: Sequence[int]) -> str:
    """A scale set's name: ``224``, ``224..524`` (evenly spaced) or ``224,424,624``."""
    s = list(sides)
    if len(s) > 2 and len(set(np.diff(s))) == 1:
        return f"{s[0]}..{s[-1]}"
    return ",".join(map(str, s))


def parse_values(text: str, name: str) -> list[float]:
    """A list ``a,b,c`` or an inclusive range ``start:stop:step`` (e.g. ``31:131:20``).

    Raises:
        HoliwidgetError: not numbers, an empty or reversed range (one line).
    """
    text = text.strip()
    example = f"e.g. --{name} 31,51,91 or --{name} 31:131:20"
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise ValueError
            start, stop, step = parts
            count = int(np.floor((stop - start) / step + 1e-9)) + 1
            values = [start + i * step for i in range(count)]
        else:
            values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise HoliwidgetError(
            f"--{name} {text!r} is not a list or a range start:stop:step; {example}"
        ) from None
    if not values:
        raise HoliwidgetError(f"--{name} is empty; {example}")
    return [int(v) if float(v).is_integer() else round(v, 10) for v in values]


def parse_scale_sets(text: str) -> list[tuple[int, ...]]:
    """Scale sets separated by ``;``, each sides ``a,b,c`` or ``all`` (the paper's eight).

    E.g. ``224;224,324,424,524;all``. Raises :class:`HoliwidgetError` for anything else.
    """
    sets = []
    for part in text.split(";"):
        part = part.strip()
        if part == "all":
            sets.append(PYRAMID_SIDES)
            continue
        try:
            sides = tuple(int(p) for p in part.split(","))
        except ValueError:
            raise HoliwidgetError(
                f"scale set {part!r} is not a list of sides; e.g. --scales '224;224,324,424;all'"
            ) from None
        sets.append(check_scales(sides))
    return sets


def _unique(values: Sequence, name: str) -> tuple:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise HoliwidgetError(f"{name} must be a list of values, got {values!r}")
    if not values:
        raise HoliwidgetError(f"{name} is empty: the grid would have no setting; give a value")
    if len(set(values)) != len(values):
        raise HoliwidgetError(f"{name} {list(values)} repeats a value; give each once")
    return tuple(values)


@dataclass(frozen=True)
class Grid:
    """The settings of a sweep, validated when made (see the module's notes).

    Attributes:
        thresholds: tau values, each in (0, 1].
        medians: median kernels m (odd, 1 is no filter).
        boxes: box kernels b (odd, 1 is no filter).
        scale_sets: pyramids, each a list of sides with the fundamental scale first.
        design: ``"full"`` or ``"star"``.
        extras: any of ``"off"`` and ``"ablation"``.

    Raises:
        HoliwidgetError: an invalid or repeated value, an empty list (one line, before any
            work).
    """

    thresholds: tuple[float, ...] = (Denoising.threshold,)
    medians: tuple[int, ...] = KERNELS
    boxes: tuple[int, ...] = KERNELS
    scale_sets: tuple[tuple[int, ...], ...] = (PYRAMID_SIDES,)
    design: str = "full"
    extras: tuple[str, ...] = EXTRAS

    def __post_init__(self) -> None:
        thresholds = _unique(self.thresholds, "threshold")
        medians = _unique(self.medians, "median")
        boxes = _unique(self.boxes, "box")
        for t in thresholds:
            Denoising(threshold=t)
        for m in medians:
            Denoising(median=m)
        for b in boxes:
            Denoising(box=b)
        raw = self.scale_sets
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence) or not raw:
            raise HoliwidgetError(
                f"scales must be a non-empty list of scale sets such as [(224,), None], got "
                f"{raw!r} (None or 'all' is the paper's pyramid)"
            )
        sets = tuple(check_scales(None if s in (None, "all") else s) for s in raw)
        if len(set(sets)) != len(sets):
            raise HoliwidgetError(f"scales {[list(s) for s in sets]} repeat a scale set")
        if self.design not in DESIGNS:
            raise HoliwidgetError(
                f"design must be one of {', '.join(DESIGNS)}, got {self.design!r}"
            )
        extras = tuple(self.extras)
        unknown = [e for e in extras if e not in EXTRAS]
        if unknown:
            raise HoliwidgetError(
                f"unknown extra setting(s) {', '.join(map(str, unknown))}; choose from "
                f"{', '.join(EXTRAS)} (or none)"
            )
        object.__setattr__(self, "thresholds", tuple(float(t) for t in thresholds))
        object.__setattr__(self, "medians", tuple(int(m) for m in medians))
        object.__setattr__(self, "boxes", tuple(int(b) for b in boxes))
        object.__setattr__(self, "scale_sets", sets)
        object.__setattr__(self, "extras", tuple(e for e in EXTRAS if e in extras))

    @property
    def reference(self) -> tuple[int, int, int, int]:
        """Indices (scale set, tau, m, b) of the reference: the defaults where listed, else
        each list's first value."""

        def pick(values: Sequence, default: object) -> int:
            return list(values).index(default) if default in values else 0

        return (
            pick(self.scale_sets, PYRAMID_SIDES),
            pick(self.thresholds, Denoising.threshold),
            pick(self.medians, Denoising.median),
            pick(self.boxes, Denoising.box),
        )

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(scale sets, tau, m, b)."""
        return len(self.scale_sets), len(self.thresholds), len(self.medians), len(self.boxes)

    def cells(self) -> list[tuple[int, int, int, int]]:
        """The grid's computed cells as indices (scale set, tau, m, b), scale set first."""
        every = itertools.product(*(range(n) for n in self.shape))
        if self.design == "full":
            return list(every)
        rs, rt, rm, rb = self.reference
        return [
            (s, t, m, b)
            for s, t, m, b in every
            if (s == rs and t == rt)
            or (s == rs and m == rm and b == rb)
            or (t == rt and m == rm and b == rb)
        ]

    def computed(self) -> np.ndarray:
        """(scale sets, tau, m, b) flags of the computed cells."""
        mask = np.zeros(self.shape, dtype=bool)
        for cell in self.cells():
            mask[cell] = True
        return mask

    def extra_settings(self) -> dict[str, Denoising | None]:
        """This grid's extra settings by name (see :func:`extra_settings`)."""
        return extra_settings(self.extras)

    def settings(self, scale_set: int) -> list[Denoising | None]:
        """Every setting scored at one scale set: its grid cells, then the extra settings."""
        cells = [
            Denoising(self.thresholds[t], self.medians[m], self.boxes[b])
            for s, t, m, b in self.cells()
            if s == scale_set
        ]
        return cells + list(self.extra_settings().values())

    def describe(self) -> str:
        """One line: the lists and the design."""
        sets = "; ".join(scale_label(s) for s in self.scale_sets)
        return (
            f"tau {list(self.thresholds)}, median {list(self.medians)}, box "
            f"{list(self.boxes)}, scales [{sets}], {self.design} design, extras: "
            f"{', '.join(self.extra_settings())}"
        )


def as_sequence(value: object, name: str) -> Sequence:
    """A single number as a one-element list; lists as they are (for the API's grid lists)."""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return (value,)
    return value  # type: ignore[return-value]
