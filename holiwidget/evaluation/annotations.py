"""The annotation CSV of an evaluation: each image file's label and ground-truth boxes.

One row per box, with the columns ``image``, ``label`` and optionally ``width``,
``height``, ``x0``, ``y0``, ``x1``, ``y1`` (boxes in the pixel frame of the image file).
The boxes become the pointing game's masks (:func:`holiwidget.metrics.box_mask`) in the
frame the network sees.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import HoliwidgetError
from ..metrics.pointing import box_mask

__all__ = ["ImageBoxes", "clip_boxes", "read_annotations"]

#: The columns of a box (x0, y0, x1, y1 in the file's pixels).
_BOX_COLUMNS = ("x0", "y0", "x1", "y1")


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
