"""The energy-based pointing game (EPG; Wang et al., Score-CAM, CVPRW 2020).

The share of a map's energy inside the ground-truth boxes of the explained class::

    EPG(L) = sum_ij L_ij M_ij / sum_ij L_ij,    M_ij = 1 inside any box of the class

Boxes are given in the pixel frame of the image *file* (``width`` x ``height``) and mapped
to the frame the network sees (the image resized to ``H x W`` without a crop, as
:func:`holiwidget.images.prepare_images` does)::

    x' = x * W / width,   y' = y * H / height

A pixel ``(i, j)`` (the unit square ``[j, j+1) x [i, i+1)``) belongs to a box when it
overlaps it: ``floor(x0') <= j < ceil(x1')`` and ``floor(y0') <= i < ceil(y1')``.

ImageNet objects are mostly central, so a centre prior -- a Gaussian centred on the image,
``exp(-((x - cx)^2 / (2 (s W)^2) + (y - cy)^2 / (2 (s H)^2)))`` with ``s = 0.25`` -- is
reported beside a method's EPG as its baseline.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import HoliwidgetError

__all__ = [
    "ImageBoxes",
    "box_mask",
    "centre_prior",
    "centre_prior_epg",
    "clip_boxes",
    "energy_pointing_game",
    "read_annotations",
]

_TOLERANCE = 1e-6


@dataclass
class ImageBoxes:
    """The label and boxes of one image file, in the file's own pixel frame.

    Attributes:
        image: file name.
        label: class index (0..999, torchvision order).
        width, height: the file's size in pixels (None when the CSV does not say; then the
            file's real size is used).
        boxes: (K, 4) float64 x0, y0, x1, y1; K = 0 for an image without boxes.
        notes: one line per box that was clipped to the image or dropped (outside it, or
            empty).
    """

    image: str
    label: int
    width: int | None
    height: int | None
    boxes: np.ndarray = field(repr=False)
    notes: list[str] = field(default_factory=list, repr=False)

    def mask(self, size: tuple[int, int] = (224, 224)) -> np.ndarray:
        """The boxes as a bool (H, W) mask in the resized frame (see :func:`box_mask`)."""
        if self.width is None or self.height is None:
            raise HoliwidgetError(f"{self.image}: the file's size is unknown; call sized() first")
        return box_mask(self.boxes, (self.width, self.height), size)

    def sized(self, width: int, height: int) -> ImageBoxes:
        """These boxes with the file's size filled in (when the CSV lacked it) and the boxes
        clipped to it; boxes left empty are dropped, each with a note."""
        w = self.width if self.width is not None else width
        h = self.height if self.height is not None else height
        boxes, notes = clip_boxes(self.boxes, w, h, self.image)
        return ImageBoxes(self.image, self.label, w, h, boxes, [*self.notes, *notes])


def clip_boxes(
    boxes: np.ndarray, width: int, height: int, image: str = "image"
) -> tuple[np.ndarray, list[str]]:
    """Clip (K, 4) boxes to a ``width`` x ``height`` image; drop those left empty.

    Returns:
        The kept boxes and one note per box that was clipped or dropped.
    """
    kept, notes = [], []
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        c = (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))
        text = f"{image}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g})"
        if not (c[0] < c[2] and c[1] < c[3]):
            notes.append(f"{text} is empty or outside the {width}x{height} image; dropped")
            continue
        if c != (x0, y0, x1, y1):
            notes.append(f"{text} extends outside the {width}x{height} image; clipped")
        kept.append(c)
    return np.asarray(kept, dtype=np.float64).reshape(-1, 4), notes


_BOX_COLUMNS = ("x0", "y0", "x1", "y1")


def read_annotations(path: str | os.PathLike) -> dict[str, ImageBoxes]:
    """Read an annotation CSV: columns image, label, and optionally width, height, x0, y0,
    x1, y1 (boxes in the file's pixels).

    One row per box; rows of the same image are gathered (they must agree on label and
    size). A label-only CSV, or a row with empty box fields, gives an image without boxes.
    Boxes reaching outside the image are clipped, boxes left empty are dropped; both are
    noted in :attr:`ImageBoxes.notes`. Extra columns are ignored.

    Args:
        path: the CSV file.

    Returns:
        image file name -> its label and boxes, in the file's order.
    """
    p = Path(path)
    if not p.is_file():
        raise HoliwidgetError(f"annotation file not found: {p}")
    out: dict[str, ImageBoxes] = {}
    rows: dict[str, list[list[float]]] = {}
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or [])
        missing = [c for c in ("image", "label") if c not in columns]
        has_boxes = any(c in columns for c in _BOX_COLUMNS)
        if has_boxes:
            missing += [c for c in _BOX_COLUMNS if c not in columns]
        if missing:
            raise HoliwidgetError(
                f"{p} lacks the column(s) {', '.join(missing)}; it needs image, label and, "
                "for boxes, x0, y0, x1, y1"
            )
        sized = "width" in columns and "height" in columns
        for n, row in enumerate(reader, start=2):
            name = (row["image"] or "").strip()
            if not name:
                raise HoliwidgetError(f"{p} line {n}: the image name is empty")
            try:
                label = int(row["label"])
                width = int(row["width"]) if sized and (row["width"] or "").strip() else None
                height = int(row["height"]) if sized and (row["height"] or "").strip() else None
            except (TypeError, ValueError):
                raise HoliwidgetError(
                    f"{p} line {n}: label, width and height must be integers"
                ) from None
            if label < 0:
                raise HoliwidgetError(f"{p} line {n}: label {label} is negative")
            fields = [(row[k] or "").strip() for k in _BOX_COLUMNS] if has_boxes else []
            box = None
            if any(fields):
                try:
                    box = [float(v) for v in fields]
                except ValueError:
                    raise HoliwidgetError(f"{p} line {n}: non-numeric box {fields}") from None
                if not np.isfinite(box).all():
                    raise HoliwidgetError(f"{p} line {n}: box {fields} is not finite")
            if name in out and (out[name].label, out[name].width, out[name].height) != (
                label,
                width,
                height,
            ):
                raise HoliwidgetError(
                    f"{p} line {n}: {name} has rows that disagree on label or size"
                )
            out.setdefault(name, ImageBoxes(name, label, width, height, np.zeros((0, 4))))
            rows.setdefault(name, [])
            if box is not None:
                rows[name].append(box)
    for name, boxes in rows.items():
        item = out[name]
        item.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if item.width is not None and item.height is not None:
            out[name] = item.sized(item.width, item.height)
    return out


def box_mask(
    boxes: np.ndarray | Sequence[Sequence[float]],
    source_size: tuple[int, int],
    size: tuple[int, int] = (224, 224),
) -> np.ndarray:
    """Map boxes from a file's pixel frame to the resized frame and rasterise them.

    Args:
        boxes: (K, 4) x0, y0, x1, y1 in the file's pixels (0 <= x0 < x1 <= width, likewise y).
        source_size: the file's (width, height).
        size: the network input's (H, W).

    Returns:
        (H, W) bool, True on pixels that overlap any box.
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim == 1 and b.size == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4 or b.shape[0] == 0:
        raise HoliwidgetError(f"boxes must be (K, 4) x0, y0, x1, y1 with K >= 1, got {b.shape}")
    width, height = source_size
    h, w = size
    if min(width, height, h, w) <= 0:
        raise HoliwidgetError(f"sizes must be positive, got {source_size} and {size}")
    if not np.isfinite(b).all():
        raise HoliwidgetError("box coordinates must be finite numbers")
    tol = _TOLERANCE * max(width, height)
    for x0, y0, x1, y1 in b:
        if not (-tol <= x0 < x1 <= width + tol and -tol <= y0 < y1 <= height + tol):
            raise HoliwidgetError(
                f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the {width}x{height} image "
                "or empty; give x0 < x1 <= width and y0 < y1 <= height in the file's pixels"
            )
    mask = np.zeros((h, w), dtype=bool)
    sx, sy = w / width, h / height
    for x0, y0, x1, y1 in b:
        c0 = max(0, math.floor(x0 * sx + _TOLERANCE))
        c1 = min(w, math.ceil(x1 * sx - _TOLERANCE))
        r0 = max(0, math.floor(y0 * sy + _TOLERANCE))
        r1 = min(h, math.ceil(y1 * sy - _TOLERANCE))
        mask[r0 : max(r1, r0 + 1), c0 : max(c1, c0 + 1)] = True
    return mask


def energy_pointing_game(
    maps: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor
) -> np.ndarray:
    """EPG = sum(L * M) / sum(L) per map.

    Args:
        maps: (H, W) or (N, H, W) non-negative maps.
        masks: (H, W) (shared) or (N, H, W) box masks (bool or 0/1).

    Returns:
        (N,) float64 in [0, 1]; NaN for a map that is zero everywhere (no energy).
    """
    lm = np.asarray(maps.detach().cpu() if isinstance(maps, torch.Tensor) else maps, np.float64)
    mk = np.asarray(masks.detach().cpu() if isinstance(masks, torch.Tensor) else masks)
    if lm.ndim == 2:
        lm = lm[None]
    if mk.ndim == 2:
        mk = mk[None]
    if lm.ndim != 3 or mk.ndim != 3 or lm.shape[-2:] != mk.shape[-2:]:
        raise HoliwidgetError(
            f"maps {lm.shape} and box masks {mk.shape} must be (N, H, W) of the same H x W"
        )
    if mk.shape[0] not in (1, lm.shape[0]):
        raise HoliwidgetError(f"{mk.shape[0]} masks for {lm.shape[0]} maps; give one or one each")
    if not np.isfinite(lm).all() or (lm < 0).any():
        raise HoliwidgetError("maps must be finite and non-negative (energies)")
    if not np.isin(mk, (0, 1)).all():
        raise HoliwidgetError("box masks must be bool or 0/1")
    total = lm.sum(axis=(1, 2))
    inside = (lm * mk).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def centre_prior(height: int = 224, width: int = 224, sigma: float = 0.25) -> np.ndarray:
    """A Gaussian centred on the image, peak 1: the centre-prior baseline map.

    ``exp(-((x - cx)^2 / (2 (sigma W)^2) + (y - cy)^2 / (2 (sigma H)^2)))`` at pixel
    centres, ``cx = W / 2``, ``cy = H / 2``.

    Args:
        height, width: the map's size.
        sigma: the standard deviation as a fraction of the side.

    Returns:
        (H, W) float64.
    """
    if height <= 0 or width <= 0 or not sigma > 0:
        raise HoliwidgetError(
            f"centre prior needs a positive size and sigma, got {height}x{width}, {sigma}"
        )
    y = (np.arange(height) + 0.5 - height / 2) / (sigma * height)
    x = (np.arange(width) + 0.5 - width / 2) / (sigma * width)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))


def centre_prior_epg(masks: np.ndarray | torch.Tensor, sigma: float = 0.25) -> np.ndarray:
    """EPG of the centre prior for each box mask: the baseline to report beside a method's.

    Args:
        masks: (H, W) or (N, H, W) box masks.
        sigma: the prior's standard deviation as a fraction of the side.

    Returns:
        (N,) float64.
    """
    mk = np.asarray(masks.detach().cpu() if isinstance(masks, torch.Tensor) else masks)
    if mk.ndim == 2:
        mk = mk[None]
    if mk.ndim != 3:
        raise HoliwidgetError(f"box masks must be (H, W) or (N, H, W), got {mk.shape}")
    prior = centre_prior(mk.shape[1], mk.shape[2], sigma)
    return energy_pointing_game(np.broadcast_to(prior, mk.shape), mk)
