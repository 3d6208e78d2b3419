"""Scoring one image of a sweep: one explain per scale set, every setting re-denoised.

Per image and scale set, one :func:`holiwidget.explain` call (Holistic-CAM, all layers at
once) gives each layer's PHA and M_f; every setting of the grid is then a re-denoising of
those (:func:`holiwidget.methods.holistic.denoise_settings`), never a network pass. The
insertion and deletion images of all maps of the image go through the model as one
batched stream, in which maps that change the same pixels at every step are evaluated once
(:func:`holiwidget.metrics.insertion_deletion`); EPG needs no forward pass. ROAD, on
request, scores each setting's maps (one per layer) exactly as ``holiwidget evaluate``
scores an image's maps, with the image's own noise (seeded by the protocol's seed and the
image's name), so every setting meets the same noise; identical maps are scored once.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from ..engine import explain
from ..errors import HoliwidgetError
from ..evaluation.inputs import EvaluationItem
from ..evaluation.scoring import (
    SUBSTRATES,
    ImageRecord,
    Protocol,
    guarded,
    image_facts,
    read_item,
    road_rng,
)
from ..methods.holistic import denoise_settings
from ..metrics.causal import curve_fractions, insertion_deletion
from ..metrics.pointing import energy_pointing_game
from ..metrics.road import road_scores
from .grid import Grid

__all__ = [
    "SWEEP_METRICS",
    "SWEEP_METRICS_ALL",
    "SweepProtocol",
    "curve_steps",
    "score_sweep_image",
    "sweep_shapes",
]

#: The scores a sweep computes by default.
SWEEP_METRICS = ("insertion", "deletion", "overall", "epg")
#: Every score a sweep can compute: ROAD too, on request (its imputation runs per map, as
#: in evaluate, so it costs far more than the rest).
SWEEP_METRICS_ALL = ("insertion", "deletion", "overall", "road", "epg")


@dataclass(frozen=True)
class SweepProtocol:
    """Every choice that changes a sweep's numbers; stored in the results' attrs.

    Attributes:
        model, weights, fingerprint: the model (see :class:`holiwidget.evaluation.Protocol`).
        layers: the layers explained.
        metrics: the scores (any of :data:`SWEEP_METRICS_ALL`).
        target: ``"label"`` or ``"predicted"``.
        step: pixels changed per insertion/deletion step.
        thresholds, medians, boxes, scale_sets, design, extras: the grid (:class:`Grid`).
        seed, road_noise, percentiles: ROAD's noise seed, noise and removal percentages (as
            in :class:`holiwidget.evaluation.Protocol`).
        input_size: the side the images are resized to.
    """

    model: str
    weights: str
    fingerprint: str
    layers: tuple[str, ...]
    metrics: tuple[str, ...]
    target: str
    step: int
    thresholds: tuple[float, ...]
    medians: tuple[int, ...]
    boxes: tuple[int, ...]
    scale_sets: tuple[tuple[int, ...], ...]
    design: str
    extras: tuple[str, ...]
    seed: int = 0
    road_noise: float = Protocol.road_noise
    percentiles: tuple[float, ...] = Protocol.percentiles
    input_size: int = 224
    kind: str = "sweep"
    substrates: dict = field(default_factory=lambda: dict(SUBSTRATES))

    @property
    def grid(self) -> Grid:
        """The protocol's grid."""
        return Grid(
            self.thresholds, self.medians, self.boxes, self.scale_sets, self.design, self.extras
        )

    def to_json(self) -> str:
        """The protocol as sorted JSON (what resuming compares)."""
        return json.dumps(asdict(self), sort_keys=True)


def sweep_shapes(protocol: SweepProtocol) -> dict[str, tuple[int, ...]]:
    """The shape of every per-image variable of a swept image."""
    grid = protocol.grid
    layers, metrics = len(protocol.layers), len(protocol.metrics)
    sets = len(grid.scale_sets)
    shapes = {
        "score": (layers, *grid.shape, metrics),
        "extra_score": (layers, sets, len(grid.extra_settings()), metrics),
        "explain_seconds": (sets,),
        "score_seconds": (),
    }
    scalars = ("label", "target", "prediction", "correct", "probability", "boxes")
    return shapes | dict.fromkeys((*scalars, "centre_prior_epg"), ())


def score_sweep_image(
    model: nn.Module,
    item: EvaluationItem,
    protocol: SweepProtocol,
    device: str | torch.device = "auto",
    threads: int | None = None,
) -> ImageRecord:
    """Score every setting of the sweep's grid on one image (all layers, all scale sets).

    Bad input of this image gives a record with ``error`` set (the run goes on).

    Args:
        model: the classifier.
        item: the image, its label and boxes.
        protocol: the sweep.
        device: ``"auto"`` or a device.
        threads: torch's CPU threads while scoring (None: as they are).

    Returns:
        The image's record: ``score`` (layer, scales, threshold, median, box, metric), NaN
        where the design computes no cell; ``extra_score`` (layer, scales, setting, metric);
        the explain time per scale set and the scoring time.
    """
    return guarded(_score, model, item, protocol, device, threads)


def _score(
    model: nn.Module, item: EvaluationItem, protocol: SweepProtocol, device: str | torch.device
) -> ImageRecord:
    start = time.perf_counter()
    grid = protocol.grid
    read = read_item(item, protocol.target, protocol.input_size)
    x = read.tensor
    n_layers = len(protocol.layers)
    cells = grid.cells()
    per_set = [grid.settings(s) for s in range(len(grid.scale_sets))]
    maps, seconds = [], np.zeros(len(grid.scale_sets))
    target, first = read.target, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for s, sides in enumerate(grid.scale_sets):
            t0 = time.perf_counter()
            ds = explain(
                model,
                x,
                layers=list(protocol.layers),
                methods=("holistic",),
                target=target,
                scales=sides,
                device=device,
            )
            seconds[s] = time.perf_counter() - t0
            if first is None:
                first, target = ds, int(ds["target"].values[0])  # every set explains it
            for li in range(n_layers):
                pha, mf = ds["primary"].values[0, li], ds["fundamental"].values[0, li]
                maps.append(denoise_settings(pha, mf, per_set[s]))
        # maps: [set][layer] -> (settings, H, W); flattened set-major, then layer
        stack = torch.from_numpy(np.concatenate(maps))
        scores: dict[str, np.ndarray] = {}
        if {"insertion", "deletion", "overall"} & set(protocol.metrics):
            res = insertion_deletion(model, x, stack, target, step=protocol.step, device=device)
            scores["insertion"], scores["deletion"] = res.insertion.auc, res.deletion.auc
            scores["overall"] = res.overall
        if "road" in protocol.metrics:
            scores["road"] = _road(model, x, maps, target, protocol, item.image, device)
    if "epg" in protocol.metrics:
        scores["epg"] = (
            energy_pointing_game(stack.double(), read.mask)
            if read.mask is not None
            else np.full(stack.shape[0], np.nan)
        )
    flat = np.stack([np.asarray(scores[m], np.float64) for m in protocol.metrics], axis=-1)
    score = np.full((n_layers, *grid.shape, len(protocol.metrics)), np.nan)
    extras = np.full(
        (n_layers, len(grid.scale_sets), len(grid.extra_settings()), flat.shape[-1]), np.nan
    )
    row = 0
    for s in range(len(grid.scale_sets)):
        mine = [c for c in cells if c[0] == s]
        for li in range(n_layers):
            for cell in mine:
                score[(li, *cell)] = flat[row]
                row += 1
            for e in range(extras.shape[2]):
                extras[li, s, e] = flat[row]
                row += 1
    if row != flat.shape[0]:  # pragma: no cover - the layout above mirrors Grid.settings
        raise HoliwidgetError("internal error: sweep maps and settings do not line up")
    values = {
        "score": score,
        "extra_score": extras,
        "explain_seconds": seconds,
        "score_seconds": np.float64(time.perf_counter() - start),
        **image_facts(item, read, first),
    }
    notes = list(read.notes) + sorted({f"{item.image}: {w.message}" for w in caught})
    return ImageRecord(item.image, None, values, notes)


def _road(
    model: nn.Module,
    x: torch.Tensor,
    maps: list[np.ndarray],
    target: int,
    protocol: SweepProtocol,
    image: str,
    device: str | torch.device,
) -> np.ndarray:
    """ROAD of every map, in the stack's order. Each setting's maps (one per layer) are
    scored as evaluate scores an image's maps, with the image's own noise: so the default
    setting's ROAD is evaluate's, and every setting meets the same noise (paired). Settings
    whose maps are identical (the default and its grid cell; tau values that saturate
    nothing) are scored once: the same maps and noise give the same scores."""
    n_layers = len(protocol.layers)
    out = []
    done: dict[bytes, np.ndarray] = {}
    for s0 in range(0, len(maps), n_layers):  # maps: [set][layer] -> (settings, H, W)
        per_layer = maps[s0 : s0 + n_layers]
        scores = np.empty((n_layers, per_layer[0].shape[0]))
        for k in range(per_layer[0].shape[0]):
            setting = np.ascontiguousarray(np.stack([m[k] for m in per_layer]))
            key = hashlib.sha256(setting).digest()
            if key not in done:
                done[key] = road_scores(
                    model,
                    x,
                    torch.from_numpy(setting),
                    target,
                    percentiles=protocol.percentiles,
                    noise=protocol.road_noise,
                    seed=road_rng(protocol.seed, image),
                    device=device,
                ).combined
            scores[:, k] = done[key]
        out.append(scores.reshape(-1))
    return np.concatenate(out)


def curve_steps(protocol: SweepProtocol) -> int:
    """Evaluations per insertion or deletion curve (K + 1)."""
    return len(curve_fractions(protocol.input_size**2, protocol.step))
