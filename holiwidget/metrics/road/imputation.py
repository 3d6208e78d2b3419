"""Noisy linear imputation of one image under several ROAD masks.

Each removed pixel is the weighted mean of its in-image 8-neighbours (the system of
:mod:`holiwidget.metrics.road.system`), plus Gaussian noise on the removed pixels only. All
masks of an image are solved together by the batched multifrontal solver
(:mod:`holiwidget.metrics.road.multifrontal`), or one by one by the sparse direct reference.
A mask that removes every pixel leaves the system singular: that image is filled with zero
(the dataset-mean colour in normalised units), and it is logged.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ...errors import HoliwidgetError
from .._common import as_images
from .multifrontal import solve_masked
from .system import impute_direct

__all__ = ["SOLVERS", "check_solver", "impute"]

log = logging.getLogger(__name__)

#: The imputation solvers: batched multifrontal (the default), and scipy.sparse per mask.
SOLVERS = ("nested", "direct")
#: Masks imputed in one batched solve: bounds its memory (under 2 GB at 224 x 224).
_SOLVE_CHUNK = 18


def check_solver(solver: str) -> str:
    """The solver's name if it is one of :data:`SOLVERS`, else a one-line error."""
    if solver not in SOLVERS:
        raise HoliwidgetError(f"unknown solver {solver!r}; choose from {', '.join(SOLVERS)}")
    return solver


def impute(
    image: torch.Tensor,
    removed: np.ndarray | torch.Tensor,
    *,
    noise: float = 0.01,
    rng: np.random.Generator | int | None = 0,
    solver: str = "nested",
) -> torch.Tensor:
    """Noisy linear imputation of one image under several masks.

    Args:
        image: (3, H, W) normalised image.
        removed: (S, H, W) or (H, W) bool, True where a pixel is removed.
        noise: standard deviation of the Gaussian noise added to removed pixels.
        rng: a numpy Generator, or a seed for one.
        solver: ``"nested"`` (batched multifrontal) or ``"direct"`` (scipy.sparse, per mask).

    Returns:
        (S, 3, H, W) float32 images.
    """
    check_solver(solver)
    if not np.isfinite(noise) or noise < 0:
        raise HoliwidgetError(f"noise must be a standard deviation >= 0, got {noise!r}")
    x = as_images(image)
    if x.shape[0] != 1:
        raise HoliwidgetError(f"impute takes one image (3, H, W), got {tuple(image.shape)}")
    x = x[0].double().cpu()
    rem = torch.as_tensor(np.asarray(removed, dtype=bool))
    if rem.dim() == 2:
        rem = rem[None]
    if rem.dim() != 3 or tuple(rem.shape[1:]) != tuple(x.shape[1:]):
        raise HoliwidgetError(
            f"masks of shape {tuple(rem.shape)} do not match the image's {tuple(x.shape[1:])}"
        )
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    everything = rem.flatten(1).all(1)
    out = x.expand(rem.shape[0], -1, -1, -1).clone()
    solvable = torch.nonzero(~everything).flatten()
    if solvable.numel():
        if solver == "nested":
            # In chunks: the batched factorisation's memory grows with the masks solved at once.
            for c0 in range(0, solvable.numel(), _SOLVE_CHUNK):
                part = solvable[c0 : c0 + _SOLVE_CHUNK]
                out[part] = solve_masked(x, rem[part])
        else:
            for k in solvable.tolist():
                out[k] = torch.from_numpy(impute_direct(x.numpy(), rem[k].numpy()))
    if everything.any():
        log.info(
            "%d mask(s) remove every pixel (map ties at a percentile threshold); "
            "those images are filled with the dataset mean (zero)",
            int(everything.sum()),
        )
        out[everything] = 0.0
    out = out.float()
    if noise > 0:
        eps = torch.from_numpy(gen.standard_normal(out.shape, dtype=np.float32))
        out += noise * eps * rem[:, None].float()
    return out
