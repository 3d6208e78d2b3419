"""The annotation CSV of an evaluation: each image file's label and ground-truth boxes.

One row per box, with the columns ``image``, ``label`` and optionally ``width``,
``height``, ``x0``, ``y0``, ``x1``, ``y1`` (boxes in the pixel frame of the image file).
The boxes become the pointing game's masks (:func:`holiwidget.metrics.box_mask`) in the
frame the network sees.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import HoliwidgetError
from ..metrics.pointing import box_mask

__all__ = ["ImageBoxes", "clip_boxes", "read_annotations"]

log = logging.getLogger(__name__)

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
        clipped to it; boxes left empty are dropped, each with a note and a log line at
        WARNING level (boxes already sized drop nothing new, so nothing is said twice)."""
        w = self.width if self.width is not None else width
        h = self.height if self.height is not None else height
        boxes, clipped, dropped = _clip(self.boxes, w, h, self.image)
        for note in dropped:
            log.warning("%s", note)
        return ImageBoxes(self.image, self.label, w, h, boxes, [*self.notes, *clipped, *dropped])


def clip_boxes(
    boxes: np.ndarray, width: int, height: int, image: str = "image"
) -> tuple[np.ndarray, list[str]]:
    """Clip (K, 4) boxes to a ``width`` x ``height`` image; drop those left empty.

    Returns:
        The kept boxes and one note per box that was clipped or dropped.
    """
    kept, clipped, dropped = _clip(boxes, width, height, image)
    return kept, [*clipped, *dropped]


def _clip(
    boxes: np.ndarray, width: int, height: int, image: str
) -> tuple[np.ndarray, list[str], list[str]]:
    """:func:`clip_boxes` with the notes of clipped and of dropped boxes apart."""
    kept, clipped, dropped = [], [], []
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        c = (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))
        text = f"{image}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g})"
        if not (c[0] < c[2] and c[1] < c[3]):
            dropped.append(f"{text} is empty or outside the {width}x{height} image; dropped")
            continue
        if c != (x0, y0, x1, y1):
            clipped.append(f"{text} extends outside the {width}x{height} image; clipped")
        kept.append(c)
    return np.asarray(kept, dtype=np.float64).reshape(-1, 4), clipped, dropped


#: Byte-order marks of encodings other than UTF-8, to name them in the message.
_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}


def _csv_text(p: Path) -> str:
    """The CSV's text: UTF-8, with or without a byte-order mark; anything else is refused
    in one line naming the file and what is wrong."""
    data = p.read_bytes()
    for bom, name in _BOMS.items():  # UTF-32-LE's mark starts with UTF-16-LE's: longest first
        if data.startswith(bom):
            raise HoliwidgetError(f"{p} is {name} text; save it as UTF-8 (CSV UTF-8)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise HoliwidgetError(
            f"{p} is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} is not "
            "UTF-8 (Latin-1 or another encoding, or not a text file); save it as UTF-8"
        ) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise HoliwidgetError(
            f"{p} holds a NUL byte on line {line}: it is a binary file, not a CSV; pass the "
            "annotation CSV"
        )
    return text


def read_annotations(path: str | os.PathLike) -> dict[str, ImageBoxes]:
    """Read an annotation CSV: columns image, label, and optionally width, height, x0, y0,
    x1, y1 (boxes in the file's pixels).

    The file is UTF-8 text (a byte-order mark, as Excel writes, is fine); other encodings
    are refused. One row per box; rows of the same image are gathered (they must agree on
    label and size); a row repeating another (same image, label, size and box) is ignored,
    with one log line at WARNING level for the file. A label-only CSV, or a row with empty
    box fields, gives an image without boxes. When the CSV gives the image's size, boxes
    reaching outside the image are clipped and boxes left empty (x1 <= x0, or outside) are
    dropped, here; otherwise when the size is known (:meth:`ImageBoxes.sized`). Both are noted
    in :attr:`ImageBoxes.notes`, and each dropped box is logged at WARNING level. Extra
    columns are ignored.

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
    seen: dict[tuple, int] = {}
    repeats: list[tuple[int, int]] = []
    text = _csv_text(p)
    try:
        with io.StringIO(text, newline="") as fh:
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
                key = (name, label, width, height, None if box is None else tuple(box))
                if key in seen:
                    repeats.append((n, seen[key]))
                    continue
                seen[key] = n
                if box is not None:
                    rows[name].append(box)
    except csv.Error as exc:
        raise HoliwidgetError(
            f"{p} is not a readable CSV ({exc}); pass the annotation CSV"
        ) from None
    if repeats:
        shown = ", ".join(f"line {a} repeats line {b}" for a, b in repeats[:3])
        more = ", ..." if len(repeats) > 3 else ""
        log.warning("%s: %d duplicate row(s) ignored (%s%s)", p, len(repeats), shown, more)
    for name, boxes in rows.items():
        item = out[name]
        item.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if item.width is not None and item.height is not None:
            out[name] = item.sized(item.width, item.height)
    return out
