"""Checks of plain argument values that many entry points share, each with a one-line error."""

from __future__ import annotations

import numbers
import reprlib
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from .errors import HoliwidgetError

__all__ = ["class_index", "class_indices", "finite_logits", "positive_int", "seed_value"]


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


def seed_value(value: object) -> int:
    """``value`` as an ``int`` if it is a whole number >= 0 (a random seed).

    Raises:
        HoliwidgetError: for booleans, floats, strings and negative numbers.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 0:
        raise HoliwidgetError(f"seed must be a non-negative integer, got {value!r}")
    return int(value)


def _shown(value: object) -> str:
    """A short one-line description of a value for a message."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"a {type(value).__name__} of dtype {value.dtype} and shape {tuple(value.shape)}"
    return reprlib.repr(value).replace("\n", " ")


def _integer_array(value: object) -> bool:
    """Whether ``value`` is a tensor or array of integers (not booleans)."""
    if isinstance(value, torch.Tensor):
        return not (value.dtype.is_floating_point or value.dtype.is_complex) and (
            value.dtype != torch.bool
        )
    return isinstance(value, np.ndarray) and value.dtype.kind in "iu"


def class_index(value: object, name: str = "target") -> int:
    """``value`` as one class index: a Python or numpy integer, or a 0-d integer tensor or
    array (what ``logits.argmax()`` returns).

    The range (0..classes - 1) is checked where the number of classes is known.

    Args:
        value: the value given.
        name: the argument's name, for the message.

    Returns:
        The index as an ``int``.

    Raises:
        HoliwidgetError: for booleans, floats (also ``3.0``: no silent truncation), strings
            and anything else.
    """
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0 and _integer_array(value):
        return int(value.item())
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise HoliwidgetError(
        f"{name} must be a class index (an integer such as 281), got {_shown(value)}"
    )


def class_indices(value: object, name: str = "target") -> int | list[int]:
    """One class index, or several (a sequence, or an integer tensor or array of any shape,
    read in order).

    Args:
        value: the value given.
        name: the argument's name, for the message.

    Returns:
        An ``int`` for one index (also a 0-d tensor or array), else a list of ``int``.

    Raises:
        HoliwidgetError: for anything that is not made of integers (floats, strings, ...).
    """
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.ndim == 0:
            return class_index(value, name)
        if not _integer_array(value):
            raise HoliwidgetError(f"{name} must hold class indices (integers), got {_shown(value)}")
        return [int(v) for v in value.reshape(-1).tolist()]
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return class_index(value, name)
    return [class_index(v, name) for v in value]


def finite_logits(logits: torch.Tensor, names: Sequence[str] | None = None) -> None:
    """A one-line error if the model's output (N, classes) holds NaN or infinite values.

    Such an output comes from weights (or buffers) with NaN or inf in them: every map and
    probability made from it would be meaningless.

    Args:
        logits: the model's output.
        names: the inputs' names, to say which one (None: inputs without names).

    Raises:
        HoliwidgetError: naming the first input whose output is not finite.
    """
    bad = ~torch.isfinite(logits.detach()).reshape(logits.shape[0], -1).all(dim=1)
    if not bool(bad.any()):
        return
    first = int(bad.nonzero()[0, 0])
    which = f" for image {names[first]!r}" if names is not None else ""
    raise HoliwidgetError(
        f"the model's output is not finite{which} (NaN or infinite logits); check the "
        "model's weights and buffers for NaN or inf (load valid weights)"
    )
