"""Scoring one image: every method at every layer, with every chosen metric.

One :func:`holiwidget.explain` call gives all maps of an image (the pyramid passes are
shared by all layers and methods); the metrics then evaluate all of its maps together in
batches: insertion and deletion as one stream of perturbed images, ROAD as one batched
imputation solve. The ROAD noise is drawn from a generator seeded by the protocol's seed and
the image's name, so an image scores the same whatever else runs and in whatever order.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr
from PIL import Image
from torch import nn

from ..engine import explain
from ..errors import HoliwidgetError
from ..images import image_size, prepare_images
from ..methods.holistic import Denoising
from ..metrics.causal import BLUR_KERNEL, BLUR_SIGMA, insertion_deletion
from ..metrics.pointing import centre_prior_epg, energy_pointing_game
from ..metrics.road import PERCENTILES, road_scores
from .inputs import EvaluationItem

__all__ = [
    "METRICS",
    "SUBSTRATES",
    "TARGETS",
    "ImageInput",
    "ImageRecord",
    "Protocol",
    "guarded",
    "image_facts",
    "model_fingerprint",
    "read_item",
    "score_image",
]

#: The per-image scores, in the order of the results' ``metric`` dimension.
METRICS = ("insertion", "deletion", "overall", "road", "epg")
#: What an evaluation explains: the annotated class, or the model's top-1 class.
TARGETS = ("label", "predicted")


#: How each score perturbs or reads the image (recorded with every protocol).
SUBSTRATES = {
    "deletion": "zero in normalised space (the dataset-mean colour)",
    "insertion": f"Gaussian blur, {BLUR_KERNEL}x{BLUR_KERNEL} kernel, sigma {BLUR_SIGMA:g}",
    "road": "noisy linear imputation (8 neighbours, weights 1/6 and 1/12)",
    "epg": "boxes mapped to the resized input frame; centre prior sigma 0.25",
}


@dataclass(frozen=True)
class Protocol:
    """Every choice that changes the numbers; stored in the results' attrs.

    Attributes:
        model: the model's name (as :func:`holiwidget.load_model` recorded it).
        weights: its weights.
        fingerprint: SHA-256 of its parameters and buffers (see :func:`model_fingerprint`).
        layers, methods, metrics: what is scored.
        target: ``"label"`` (the annotated class) or ``"predicted"`` (top-1).
        step: pixels changed per insertion/deletion step.
        seed: seed of the ROAD imputation noise.
        road_noise: standard deviation of that noise.
        percentiles: ROAD removal percentages.
        threshold, median, box: Holistic-CAM's denoising parameters.
        input_size: the side the images are resized to.
    """

    model: str
    weights: str
    fingerprint: str
    layers: tuple[str, ...]
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    target: str
    step: int
    seed: int
    road_noise: float = 0.01
    percentiles: tuple[float, ...] = tuple(float(p) for p in PERCENTILES)
    threshold: float = Denoising.threshold
    median: int = Denoising.median
    box: int = Denoising.box
    input_size: int = 224
    substrates: dict = field(default_factory=lambda: dict(SUBSTRATES))

    def to_json(self) -> str:
        """The protocol as sorted JSON (what resuming compares)."""
        return json.dumps(asdict(self), sort_keys=True)


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the names, shapes and values of a model's parameters and buffers."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass
class ImageRecord:
    """What scoring one image produced.

    Attributes:
        image: the image's identifier.
        error: why it was left out (one line), or None.
        values: its per-image variables of the results (without the ``image`` dimension).
        notes: remarks worth a log line (clipped boxes, ROAD ties, ...).
    """

    image: str
    error: str | None
    values: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def road_rng(seed: int, image: str) -> np.random.Generator:
    """The generator of one image's ROAD noise: the run's seed and the image's name."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(image.encode())]))


def score_image(
    model: nn.Module,
    item: EvaluationItem,
    protocol: Protocol,
    device: str | torch.device = "auto",
    threads: int | None = None,
) -> ImageRecord:
    """Explain one image with every method at every layer and score each map.

    Bad input of this image (an unreadable, truncated, missing or oversized file, a label
    outside the model's classes) gives a record with ``error`` set to a one-line reason
    instead of an exception, so that a run goes on.

    Args:
        model: the classifier.
        item: the image, its label and boxes.
        protocol: what to compute.
        device: ``"auto"`` or a device.
        threads: torch's CPU threads while scoring (None: as they are). CPU results depend
            on it at float rounding (how reductions are split), so runs that must agree to
            the bit use the same number.

    Returns:
        The image's record.
    """
    return guarded(_score, model, item, protocol, device, threads)


def guarded(
    compute: Callable[[nn.Module, EvaluationItem, Any, str | torch.device], ImageRecord],
    model: nn.Module,
    item: EvaluationItem,
    protocol: Any,
    device: str | torch.device,
    threads: int | None,
) -> ImageRecord:
    """Run one image's scoring with torch's CPU threads set to ``threads`` (None: as they
    are); bad input of the image (a :class:`HoliwidgetError`) becomes a skipped record."""
    before = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        return compute(model, item, protocol, device)
    except HoliwidgetError as exc:
        return ImageRecord(item.image, str(exc))
    finally:
        torch.set_num_threads(before)


def one_line(exc: BaseException) -> str:
    """An exception as ``Type: first line of its message``, for one-line reasons."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


#: What reading a damaged, truncated, vanished or oversized image file raises (PIL raises
#: OSError subclasses, SyntaxError from some format plugins, DecompressionBombError).
_UNREADABLE = (OSError, SyntaxError, Image.DecompressionBombError)


@dataclass
class ImageInput:
    """One item read for scoring.

    Attributes:
        tensor: the normalised image (1, 3, S, S).
        target: the class to explain (the label), or None for the top-1 class.
        mask: the boxes as a mask at the input size, or None without boxes.
        boxes: how many boxes count.
        notes: remarks about the boxes (clipped, dropped).
    """

    tensor: torch.Tensor
    target: int | None
    mask: torch.Tensor | None
    boxes: int
    notes: list[str]


def read_item(item: EvaluationItem, target: str, input_size: int) -> ImageInput:
    """Read an image to score, with its target and box mask.

    Args:
        item: the image, its label and boxes.
        target: ``"label"`` or ``"predicted"``.
        input_size: the side the image is resized to.

    Raises:
        HoliwidgetError: the image cannot be read, or it has no label while labels are
            explained (one line; the run leaves the image out).
    """
    if target == "label" and item.label is None:
        raise HoliwidgetError(f"{item.image} has no label; give annotations or target='predicted'")
    try:
        width, height = image_size(item.path)  # as displayed (EXIF), the frame of the boxes
        prep = prepare_images([item.path], size=input_size)
    except _UNREADABLE as exc:  # the image's fault: a skipped record, not a failed run
        raise HoliwidgetError(
            f"cannot read {item.path} as an image ({one_line(exc)}); replace or remove the file"
        ) from None
    x = prep.tensor
    mask, boxes, notes = None, 0, []
    if item.boxes is not None:
        sized = item.boxes.sized(width, height)
        notes = list(sized.notes)
        boxes = len(sized.boxes)
        if boxes:
            mask = sized.mask(tuple(x.shape[-2:]))
    return ImageInput(x, item.label if target == "label" else None, mask, boxes, notes)


def image_facts(item: EvaluationItem, read: ImageInput, ds: xr.Dataset) -> dict[str, np.ndarray]:
    """The per-image coordinates of the results: label, target, prediction, correct,
    probability, boxes and the centre prior's EPG, from an explained image's dataset."""
    prediction = int(ds["top1"].values[0])
    prior = float(centre_prior_epg(read.mask)[0]) if read.mask is not None else np.nan
    return {
        "label": np.int64(-1 if item.label is None else item.label),
        "target": np.int64(int(ds["target"].values[0])),
        "prediction": np.int64(prediction),
        "correct": np.bool_(item.label is not None and prediction == item.label),
        "probability": np.float64(ds["probability"].values[0]),
        "boxes": np.int64(read.boxes),
        "centre_prior_epg": np.float64(prior),
    }


def _score(
    model: nn.Module, item: EvaluationItem, protocol: Protocol, device: str | torch.device
) -> ImageRecord:
    read = read_item(item, protocol.target, protocol.input_size)
    notes = list(read.notes)
    x, target = read.tensor, read.target
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = explain(
            model,
            x,
            layers=list(protocol.layers),
            methods=list(protocol.methods),
            target=target,
            threshold=protocol.threshold,
            median=protocol.median,
            box=protocol.box,
            device=device,
        )
        c, n_layers = len(protocol.methods), len(protocol.layers)
        maps = torch.from_numpy(ds["attribution"].values[0]).reshape(c * n_layers, *x.shape[-2:])
        tgt = int(ds["target"].values[0])
        scores: dict[str, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        if {"insertion", "deletion", "overall"} & set(protocol.metrics):
            res = insertion_deletion(model, x, maps, tgt, step=protocol.step, device=device)
            scores["insertion"], scores["deletion"] = res.insertion.auc, res.deletion.auc
            scores["overall"] = res.overall
            for kind in ("insertion", "deletion"):
                curves = getattr(res, kind).curves.astype(np.float32)
                values[f"{kind}_curve"] = curves.reshape(c, n_layers, -1)
        if "road" in protocol.metrics:
            road = road_scores(
                model,
                x,
                maps,
                tgt,
                percentiles=protocol.percentiles,
                noise=protocol.road_noise,
                seed=road_rng(protocol.seed, item.image),
                device=device,
            )
            scores["road"] = road.combined
            values["road_morf"] = road.morf.reshape(c, n_layers, -1)
            values["road_lerf"] = road.lerf.reshape(c, n_layers, -1)
    notes += sorted({f"{item.image}: {w.message}" for w in caught})
    if "epg" in protocol.metrics:
        epg = np.full(c * n_layers, np.nan)
        if read.mask is not None:
            epg = energy_pointing_game(maps.double(), read.mask)
        scores["epg"] = epg
    score = np.stack([np.asarray(scores[m], np.float64) for m in protocol.metrics], axis=-1)
    values["score"] = score.reshape(c, n_layers, len(protocol.metrics))
    values.update(image_facts(item, read, ds))
    return ImageRecord(item.image, None, values, notes)
