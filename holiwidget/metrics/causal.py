"""Insertion and Deletion (Petsiuk et al., RISE, BMVC 2018) and the paper's Over-all score.

Pixels are ranked by attribution, highest first (ties in raster order: a stable sort).
With ``N = H * W`` pixels and ``step`` pixels per step there are ``K = ceil(N / step)``
steps and ``K + 1`` evaluations; after step ``k`` the first ``n_k = min(k * step, N)``
ranked pixels have changed::

    deletion:  x_k = x  with the n_k top pixels set to 0 (the dataset-mean colour in
               ImageNet-normalised space)
    insertion: x_k = blur(x)  with the n_k top pixels restored from x;
               blur = Gaussian, 11 x 11 kernel, sigma 5 (reflected border)
    curve:     p_k = softmax(model(x_k))[c]      (c: the explained class)
    score:     AUC = trapezoid of p_k over the fractions t_k = n_k / N in [0, 1]
    Over-all = AUC(insertion) - AUC(deletion)    (higher is better)

All ``K + 1`` images of a map are built in batches and evaluated under ``torch.no_grad``;
at 224 x 224 and ``step = 224`` that is 225 images per curve, as in the paper.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checks import positive_int
from ..errors import HoliwidgetError
from ._common import MapsLike, TargetLike, as_images, as_maps, as_targets, evaluation, pair_count

__all__ = [
    "CausalCurves",
    "CausalScores",
    "auc",
    "blur",
    "curve_fractions",
    "deletion",
    "insertion",
    "insertion_deletion",
    "overall",
    "ranking",
]

log = logging.getLogger(__name__)

#: The insertion substrate's Gaussian blur (RISE): kernel side and sigma in pixels.
BLUR_KERNEL = 11
BLUR_SIGMA = 5.0


@dataclass
class CausalCurves:
    """Insertion or deletion curves of several maps.

    Attributes:
        kind: ``"insertion"`` or ``"deletion"``.
        fractions: (K + 1,) share of pixels changed at each evaluation, t_k = n_k / N.
        curves: (M, K + 1) softmax probability of the explained class at each evaluation.
        auc: (M,) trapezoid area under each curve over ``fractions``.
        targets: (M,) the explained classes.
        step: pixels changed per step.
    """

    kind: str
    fractions: np.ndarray
    curves: np.ndarray
    auc: np.ndarray
    targets: np.ndarray
    step: int


@dataclass
class CausalScores:
    """Insertion and deletion of the same maps, and Over-all = insertion - deletion."""

    insertion: CausalCurves
    deletion: CausalCurves

    @property
    def overall(self) -> np.ndarray:
        """(M,) AUC(insertion) - AUC(deletion)."""
        return overall(self.insertion.auc, self.deletion.auc)


def auc(curves: np.ndarray | torch.Tensor, fractions: np.ndarray | None = None) -> np.ndarray:
    """Area under curves by the trapezoid rule: sum_k (t_{k+1} - t_k) (p_k + p_{k+1}) / 2.

    Args:
        curves: (K + 1,) or (M, K + 1) values.
        fractions: (K + 1,) increasing abscissae from 0 to 1; default evenly spaced.

    Returns:
        The areas, () or (M,) float64.
    """
    p = np.asarray(curves, dtype=np.float64)
    if p.ndim not in (1, 2) or p.shape[-1] < 2:
        raise HoliwidgetError(f"curves must be (K + 1,) or (M, K + 1) with K >= 1, got {p.shape}")
    t = (
        np.linspace(0.0, 1.0, p.shape[-1])
        if fractions is None
        else np.asarray(fractions, dtype=np.float64)
    )
    if t.shape != p.shape[-1:] or np.any(np.diff(t) < 0):
        raise HoliwidgetError(
            f"fractions must be increasing and match the curves' length {p.shape[-1]}"
        )
    return ((t[1:] - t[:-1]) * (p[..., 1:] + p[..., :-1]) / 2.0).sum(-1)


def overall(insertion_auc: np.ndarray, deletion_auc: np.ndarray) -> np.ndarray:
    """Over-all = AUC(insertion) - AUC(deletion), the paper's combination (higher is better)."""
    return np.asarray(insertion_auc, dtype=np.float64) - np.asarray(deletion_auc, np.float64)


def blur(
    images: torch.Tensor, kernel: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA
) -> torch.Tensor:
    """The insertion substrate: a separable Gaussian blur with a reflected border.

    ``g(i) = exp(-i^2 / (2 sigma^2)) / sum_j exp(-j^2 / (2 sigma^2))`` for
    ``i = -(kernel // 2) .. kernel // 2``, applied along rows then columns.

    Args:
        images: (N, C, H, W).
        kernel: odd kernel side.
        sigma: standard deviation in pixels.

    Returns:
        The blurred images, same shape.
    """
    if kernel < 1 or kernel % 2 == 0 or sigma <= 0:
        raise HoliwidgetError(f"blur needs an odd kernel >= 1 and sigma > 0, got {kernel}, {sigma}")
    half = kernel // 2
    i = torch.arange(-half, half + 1, dtype=torch.float64)
    g = torch.exp(-(i**2) / (2 * sigma**2))
    g = (g / g.sum()).to(images.dtype).to(images.device)
    n, c, h, w = images.shape
    x = images.reshape(n * c, 1, h, w)
    mode = "reflect" if min(h, w) > half else "replicate"
    x = F.pad(x, (half, half, 0, 0), mode=mode)
    x = F.conv2d(x, g.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, half, half), mode=mode)
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return x.reshape(n, c, h, w)


def ranking(maps: torch.Tensor) -> torch.Tensor:
    """Rank of every pixel, 0 for the most relevant; ties keep raster order (stable sort).

    Args:
        maps: (M, H, W).

    Returns:
        (M, H * W) int64 ranks.
    """
    flat = maps.reshape(maps.shape[0], -1)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order).contiguous())
    return ranks


def curve_fractions(pixels: int, step: int) -> np.ndarray:
    """The abscissae t_k = min(k * step, N) / N, k = 0..ceil(N / step), of a curve over N pixels."""
    step = positive_int(step, "step")
    changed = np.minimum(np.arange(math.ceil(pixels / step) + 1) * step, pixels)
    return changed / pixels


def _distinct_pairs(
    ranks: torch.Tensor,
    step: int,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (image, map, target) pairs whose curves differ, in first-seen order, and for
    every pair the position of its representative among them.

    A pixel has changed after step k iff ``rank < k * step``, i.e. ``rank // step < k``:
    maps with the same ``rank // step`` (for the same image and class) give the same
    curves, so each such group is evaluated once (a sweep's settings often share them).
    """
    pixels = ranks.shape[1]
    dtype = np.int16 if pixels // step < np.iinfo(np.int16).max else np.int32
    blocks = torch.div(ranks, step, rounding_mode="floor").numpy().astype(dtype)
    seen: dict[tuple[int, int, bytes], int] = {}
    firsts: list[int] = []
    inverse = torch.empty(images.numel(), dtype=torch.long)
    keys: dict[int, bytes] = {}
    for p in range(images.numel()):
        mi = int(maps[p])
        if mi not in keys:
            keys[mi] = blocks[mi].tobytes()
        key = (int(images[p]), int(targets[p]), keys[mi])
        if key not in seen:
            seen[key] = len(firsts)
            firsts.append(p)
        inverse[p] = seen[key]
    return torch.tensor(firsts, dtype=torch.long), inverse


def _curves(
    model: nn.Module,
    images: torch.Tensor,
    maps: MapsLike,
    target: TargetLike,
    kinds: tuple[str, ...],
    step: int,
    batch_size: int | None,
    device: str | torch.device,
) -> dict[str, CausalCurves]:
    x = as_images(images)
    m = as_maps(maps, x)
    step = positive_int(step, "step")
    count = pair_count(x, m)
    targets = as_targets(target, count)
    h, w = x.shape[-2:]
    pixels = h * w
    fractions = curve_fractions(pixels, step)
    steps = len(fractions) - 1
    changed = torch.clamp(torch.arange(steps + 1) * step, max=pixels)
    ranks = ranking(m)
    out: dict[str, np.ndarray] = {k: np.zeros((count, steps + 1)) for k in kinds}
    with evaluation(model, device, batch_size) as ev:
        dev = ev.device
        xd = x.to(dev).contiguous(memory_format=torch.channels_last)
        if targets is None:
            targets = ev.top1_targets(xd, count)
            log.info("explaining each image's top-1 class %s", targets.tolist())
        blurred = (
            blur(xd).contiguous(memory_format=torch.channels_last) if "insertion" in kinds else None
        )
        zero = torch.zeros((), dtype=xd.dtype, device=dev)
        rank_d = ranks.to(dev)
        changed_d = changed.to(dev)
        img_all = torch.arange(count) if x.shape[0] > 1 else torch.zeros(count, dtype=torch.long)
        map_all = torch.arange(count) if m.shape[0] > 1 else torch.zeros(count, dtype=torch.long)
        distinct, inverse = _distinct_pairs(ranks, step, img_all, map_all, targets)
        for kind in kinds:
            # One stream of (map, k) evaluations, cut into batches that may span maps; pairs
            # whose maps change the same pixels at every step are evaluated once.
            pair = distinct.repeat_interleave(steps + 1)
            kk = torch.arange(steps + 1).repeat(distinct.numel())
            probs = torch.empty(pair.numel())
            img_of, map_of = img_all[pair], map_all[pair]
            for b0 in range(0, pair.numel(), ev.batch_size):
                sl = slice(b0, b0 + ev.batch_size)
                ii, mi = img_of[sl].to(dev), map_of[sl].to(dev)
                done = rank_d[mi] < changed_d[kk[sl].to(dev)][:, None]
                done = done.view(-1, 1, h, w)
                if x.shape[0] == 1:  # broadcast the one image: no gathered copies
                    img = xd.expand(done.shape[0], -1, -1, -1)
                    base = None if blurred is None else blurred.expand_as(img)
                else:
                    img, base = xd[ii], None if blurred is None else blurred[ii]
                if kind == "deletion":
                    batch = torch.where(done, zero, img)
                else:
                    batch = torch.where(done, img, base)
                probs[sl] = ev.probabilities(batch, targets[pair[sl]])
            out[kind] = probs.view(distinct.numel(), steps + 1)[inverse].double().numpy()
    return {
        kind: CausalCurves(
            kind=kind,
            fractions=fractions,
            curves=out[kind],
            auc=auc(out[kind], fractions),
            targets=targets.numpy(),
            step=step,
        )
        for kind in kinds
    }


def insertion(
    model: nn.Module,
    images: torch.Tensor,
    maps: MapsLike,
    target: TargetLike = None,
    *,
    step: int = 224,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
) -> CausalCurves:
    """Insertion curves: restore the most relevant pixels first into a blurred copy.

    Args:
        model: a classifier returning logits (it is left as it was found).
        images: ImageNet-normalised (3, H, W) or (N, 3, H, W).
        maps: saliency maps (H, W) or (M, H, W), torch or numpy; one per image, or one
            image with several maps, or one map for several images.
        target: the explained class: one for all, one per map, or None for each image's
            top-1 class.
        step: pixels restored per step (224 at 224 x 224, as in the paper).
        batch_size: images per forward pass (default: 8 on the CPU, 64 on a GPU).
        device: ``"auto"`` (CUDA, MPS, CPU) or a device.

    Returns:
        The curves, fractions and AUCs.
    """
    return _curves(model, images, maps, target, ("insertion",), step, batch_size, device)[
        "insertion"
    ]


def deletion(
    model: nn.Module,
    images: torch.Tensor,
    maps: MapsLike,
    target: TargetLike = None,
    *,
    step: int = 224,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
) -> CausalCurves:
    """Deletion curves: set the most relevant pixels first to zero (the mean colour).

    Arguments as for :func:`insertion`; lower AUC is better.
    """
    return _curves(model, images, maps, target, ("deletion",), step, batch_size, device)["deletion"]


def insertion_deletion(
    model: nn.Module,
    images: torch.Tensor,
    maps: MapsLike,
    target: TargetLike = None,
    *,
    step: int = 224,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
) -> CausalScores:
    """Both curves of the same maps (one device transfer, one target choice).

    Arguments as for :func:`insertion`. ``.overall`` is AUC(insertion) - AUC(deletion).
    """
    res = _curves(model, images, maps, target, ("insertion", "deletion"), step, batch_size, device)
    return CausalScores(insertion=res["insertion"], deletion=res["deletion"])
