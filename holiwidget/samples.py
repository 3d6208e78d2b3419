"""Demo images embedded in scikit-image, usable by name wherever an image is expected."""

from __future__ import annotations

import numpy as np
from skimage import data as skdata

from .errors import HoliwidgetError

__all__ = ["SAMPLES", "load_sample"]

#: Names of the embedded sample images.
SAMPLES = ("chelsea", "coffee", "astronaut", "rocket")


def load_sample(name: str) -> np.ndarray:
    """The embedded sample image ``name`` as an (H, W, 3) uint8 array.

    Args:
        name: one of :data:`SAMPLES`.

    Returns:
        The RGB image.
    """
    if name not in SAMPLES:
        raise HoliwidgetError(f"unknown sample {name!r}; choose one of {', '.join(SAMPLES)}")
    return np.asarray(getattr(skdata, name)())
