"""The images an evaluation runs on: a folder or a list of files, matched to an annotation CSV.

Mismatches are not fatal: images listed in the CSV but missing from the folder, and images
in the folder without a row in the CSV, are left out, and each kind is reported once as a
one-line problem. Boxes are sized to their image files here (the header only), so that each
box dropped (empty, or outside its image) is logged once, at WARNING level, before the run
starts. Per-image problems (an unreadable file, a label outside the model's classes)
surface later, when the image is scored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import positive_int
from ..errors import HoliwidgetError
from ..images import IMAGE_SUFFIXES, image_size
from .annotations import ImageBoxes, read_annotations

__all__ = ["EvaluationInputs", "EvaluationItem", "collect_inputs"]

AnnotationsLike = str | os.PathLike | Mapping[str, ImageBoxes] | None


@dataclass(frozen=True)
class EvaluationItem:
    """One image to score.

    Attributes:
        image: its identifier in the results (the file name).
        path: where to read it.
        label: the ground-truth class, or None without annotations.
        boxes: its label and boxes from the CSV, or None without annotations.
    """

    image: str
    path: str
    label: int | None
    boxes: ImageBoxes | None = field(default=None, repr=False, compare=False)


@dataclass
class EvaluationInputs:
    """The items to score, in a fixed order, and what was left out and why."""

    items: list[EvaluationItem]
    problems: list[str]


def _examples(names: Sequence[str], k: int = 3) -> str:
    shown = ", ".join(sorted(names)[:k])
    return shown + (", ..." if len(names) > k else "")


def _image_files(images: str | os.PathLike | Sequence[str | os.PathLike]) -> dict[str, Path]:
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.exists():
            raise HoliwidgetError(f"image folder {folder} does not exist; pass --images DIR")
        if not folder.is_dir():
            raise HoliwidgetError(
                f"{folder} is not a folder; pass the folder that holds the images"
            )
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise HoliwidgetError(
                f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}"
            )
    else:
        files = [Path(p) for p in images]
        if not files:
            raise HoliwidgetError("no images given; pass a folder or a list of image files")
    out: dict[str, Path] = {}
    for f in files:
        if f.name in out:
            raise HoliwidgetError(
                f"two images are named {f.name}; results are keyed by file name, rename one"
            )
        out[f.name] = f
    return out


def _sized(boxes: ImageBoxes, path: Path) -> ImageBoxes:
    """The boxes sized to the file as displayed (EXIF orientation applied), when the CSV did
    not give its size and there are boxes; an unreadable file is left for scoring to report."""
    if (boxes.width is not None and boxes.height is not None) or not len(boxes.boxes):
        return boxes
    try:
        return boxes.sized(*image_size(path))
    except HoliwidgetError:
        return boxes


def collect_inputs(
    images: str | os.PathLike | Sequence[str | os.PathLike],
    annotations: AnnotationsLike = None,
    limit: int | None = None,
) -> EvaluationInputs:
    """Match image files to their annotations.

    Args:
        images: a folder (every image file in it) or a list of image files.
        annotations: an annotation CSV (see :func:`holiwidget.evaluation.read_annotations`),
            the dict it returns, or None (no labels, no boxes).
        limit: keep only the first ``limit`` images (in the CSV's order, else by name).

    Returns:
        The items and the problems found (one line each). Boxes are sized to their files
        (see :meth:`ImageBoxes.sized`; dropped boxes are logged at WARNING level).
    """
    if limit is not None:
        limit = positive_int(limit, "limit")
    files = _image_files(images)
    problems: list[str] = []
    if annotations is None:
        items = [EvaluationItem(name, str(path), None, None) for name, path in files.items()]
    else:
        table = (
            annotations if isinstance(annotations, Mapping) else read_annotations(annotations)  # type: ignore[arg-type]
        )
        absent = [name for name in table if name not in files]
        unlisted = [name for name in files if name not in table]
        if absent:
            problems.append(
                f"{len(absent)} image(s) of the annotations are not among the image files "
                f"({_examples(absent)}); left out"
            )
        if unlisted:
            problems.append(
                f"{len(unlisted)} image file(s) have no row in the annotations "
                f"({_examples(unlisted)}); left out"
            )
        items = [
            EvaluationItem(name, str(files[name]), boxes.label, _sized(boxes, files[name]))
            for name, boxes in table.items()
            if name in files
        ]
        if not items:
            raise HoliwidgetError(
                "no image file matches a row of the annotations; check that --images and "
                "--annotations belong together (the CSV's image column holds file names)"
            )
    if limit is not None:
        items = items[:limit]
    return EvaluationInputs(items, problems)
