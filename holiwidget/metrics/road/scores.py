"""ROAD: RemOve And Debias (Rong et al., ICML 2022), with noisy linear imputation.

For a map ``L`` and a percentile ``p`` (10, 20, ..., 90), the pixels removed are chosen as
pytorch-grad-cam's ``ROADCombined`` chooses them (percentile thresholding, ties removed
together)::

    MoRF (most relevant first):  keep L < percentile(L, p)          -> removes ~(100-p) %
    LeRF (least relevant first): keep (1-L) < percentile(1-L, p)    -> removes ~(100-p) %

so the nine percentiles remove 90 %, 80 %, ..., 10 % of the pixels in both orders. Each
removed pixel is imputed as the weighted mean of its in-image 8-neighbours (weights 1/6
direct, 1/12 diagonal): one sparse linear system per mask over the removed pixels, all
channels at once, plus Gaussian noise ``sigma = 0.01`` (in normalised units) on the
removed pixels only. With softmax ``p_c`` of the explained class::

    score(order, p) = p_c(imputed) - p_c(original)
    combined       = (mean_p score(LeRF, p) - mean_p score(MoRF, p)) / 2   (higher is better)

A map where a percentile's threshold equals its minimum removes every pixel (e.g. a
ReLU'd map whose zeros cover p % or more); the imputation is then undefined (the system is
singular: pytorch-grad-cam returns NaN there). holiwidget fills such an image with zero,
the dataset-mean colour (plus the noise), and logs it.

All imputed images of an image (both orders, all percentiles, all of its maps) are solved
in one batched multifrontal factorisation (:func:`holiwidget.metrics.road.impute`;
``solver="direct"`` solves each mask with ``scipy.sparse`` instead, the reference) and
evaluated in batched forward passes with the unperturbed image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...errors import HoliwidgetError
from .._common import (
    MapsLike,
    TargetLike,
    as_images,
    as_maps,
    as_targets,
    evaluation,
    pair_count,
    pick,
)
from .imputation import check_solver, impute

__all__ = [
    "PERCENTILES",
    "RoadScores",
    "removal_masks",
    "road_combined",
    "road_scores",
]

#: pytorch-grad-cam's default ROAD percentiles.
PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


@dataclass
class RoadScores:
    """ROAD scores of several maps.

    Attributes:
        percentiles: (F,) the thresholds' percentiles.
        morf: (M, F) p_c(imputed) - p_c(original), most relevant pixels removed.
        lerf: (M, F) the same, least relevant pixels removed.
        removed_morf: (M, F) the share of pixels actually removed (ties make it larger).
        removed_lerf: (M, F)
        original: (M,) p_c of the unperturbed image.
        targets: (M,) the explained classes.
        noise: the imputation noise's standard deviation.
        seed: the noise seed (None when a Generator was passed).
    """

    percentiles: np.ndarray
    morf: np.ndarray
    lerf: np.ndarray
    removed_morf: np.ndarray
    removed_lerf: np.ndarray
    original: np.ndarray
    targets: np.ndarray
    noise: float
    seed: int | None

    @property
    def combined(self) -> np.ndarray:
        """(M,) (mean LeRF - mean MoRF) / 2, pytorch-grad-cam's ROADCombined."""
        return (self.lerf.mean(axis=1) - self.morf.mean(axis=1)) / 2.0


def _percentiles(percentiles: Sequence[float]) -> list[float]:
    values = list(percentiles)
    if not values or any(
        isinstance(p, bool) or not isinstance(p, (int, float, np.number)) or not 0 < p < 100
        for p in values
    ):
        raise HoliwidgetError(f"percentiles must be numbers in (0, 100), got {percentiles!r}")
    return values


def removal_masks(
    cam: np.ndarray | torch.Tensor, percentiles: Sequence[float] = PERCENTILES
) -> tuple[np.ndarray, np.ndarray]:
    """The removed pixels of each percentile and order, exactly as pytorch-grad-cam picks them.

    ``MoRF``: removed where ``not (L < percentile(L, p))``; ``LeRF``: the same on ``1 - L``.
    The map is taken as float32 (pytorch-grad-cam's maps are float32; the threshold is
    compared in float32, as there).

    Args:
        cam: (H, W) map.
        percentiles: the percentiles p.

    Returns:
        Two (F, H, W) bool arrays: MoRF and LeRF masks, True = removed.
    """
    values = _percentiles(percentiles)
    m = torch.as_tensor(np.asarray(cam, dtype=np.float32))
    if m.dim() != 2:
        raise HoliwidgetError(f"a ROAD map must be (H, W), got {tuple(m.shape)}")
    out = []
    for mm in (m, 1 - m):
        arr = mm.numpy()
        out.append(np.stack([~(mm < np.percentile(arr, p)).numpy() for p in values]))
    return out[0], out[1]


def road_scores(
    model: nn.Module,
    images: torch.Tensor,
    maps: MapsLike,
    target: TargetLike = None,
    *,
    percentiles: Sequence[float] = PERCENTILES,
    noise: float = 0.01,
    seed: int | np.random.Generator | None = 0,
    solver: str = "nested",
    batch_size: int | None = None,
    device: str | torch.device = "auto",
) -> RoadScores:
    """ROAD MoRF / LeRF scores and the combined score of saliency maps.

    Args:
        model: a classifier returning logits (left as it was found).
        images: ImageNet-normalised (3, H, W) or (N, 3, H, W).
        maps: (H, W) or (M, H, W) maps (torch or numpy); one per image, or one image with
            several maps, or one map for several images.
        target: the explained class (one, one per map, or None for each image's top-1).
        percentiles: the thresholds (default 10, 20, ..., 90).
        noise: imputation noise standard deviation (0 for none).
        seed: seed of the numpy Generator drawing the noise (or a Generator).
        solver: ``"nested"`` (default, batched) or ``"direct"`` (scipy.sparse per mask).
        batch_size: images per forward pass (default: 8 on the CPU, 64 on a GPU).
        device: ``"auto"`` (CUDA, MPS, CPU) or a device.

    Returns:
        The scores; ``.combined`` is ``(mean LeRF - mean MoRF) / 2``.
    """
    values = _percentiles(percentiles)
    check_solver(solver)
    x = as_images(images)
    m = as_maps(maps, x)
    count = pair_count(x, m)
    targets = as_targets(target, count)
    gen = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    f = len(values)
    scores = np.zeros((2, count, f))
    removed = np.zeros((2, count, f))
    original = np.zeros(count)
    with evaluation(model, device, batch_size) as ev:
        if targets is None:
            targets = ev.top1_targets(x, count)
        # Group the maps by image: one batched solve per image for all of its masks.
        by_image: dict[int, list[int]] = {}
        for i in range(count):
            by_image.setdefault(i if x.shape[0] > 1 else 0, []).append(i)
        for img, members in by_image.items():
            masks = []
            for i in members:
                morf, lerf = removal_masks(pick(m, i).numpy(), values)
                masks.extend([morf, lerf])
                removed[0, i] = morf.reshape(f, -1).mean(1)
                removed[1, i] = lerf.reshape(f, -1).mean(1)
            stack = np.concatenate(masks)  # (2 F per map, H, W)
            imputed = impute(x[img], stack, noise=noise, rng=gen, solver=solver)
            batch = torch.cat([x[img : img + 1], imputed])
            tg = targets[members]
            per_row = torch.cat([tg[:1], tg.repeat_interleave(2 * f)])
            probs = torch.cat(
                [
                    ev.probabilities(
                        batch[b0 : b0 + ev.batch_size], per_row[b0 : b0 + ev.batch_size]
                    )
                    for b0 in range(0, batch.shape[0], ev.batch_size)
                ]
            ).double()
            if len(set(tg.tolist())) > 1:  # other classes for other maps of this image
                base = torch.cat(
                    [ev.probabilities(x[img : img + 1], tg[k : k + 1]) for k in range(len(members))]
                ).double()
            else:
                base = probs[:1].expand(len(members))
            rest = probs[1:].view(len(members), 2, f)
            for k, i in enumerate(members):
                original[i] = float(base[k])
                scores[:, i] = (rest[k] - base[k]).numpy()
    return RoadScores(
        percentiles=np.asarray(values, dtype=np.float64),
        morf=scores[0],
        lerf=scores[1],
        removed_morf=removed[0],
        removed_lerf=removed[1],
        original=original,
        targets=targets.numpy(),
        noise=float(noise),
        seed=None if isinstance(seed, np.random.Generator) else seed,
    )


def road_combined(
    model: nn.Module,
    images: torch.Tensor,
    maps: MapsLike,
    target: TargetLike = None,
    **kwargs: object,
) -> np.ndarray:
    """(M,) ROAD combined scores, ``(mean LeRF - mean MoRF) / 2``; keywords as :func:`road_scores`."""
    return road_scores(model, images, maps, target, **kwargs).combined  # type: ignore[arg-type]
