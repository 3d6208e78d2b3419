"""The explorer's exports: names that say what they hold, and the views on one captioned sheet.

A name left empty becomes ``<image>_<model>_class<target>_tau<τ>_m<m>_b<b>`` (``_fsd-off``
without denoising). A figure sheet puts the views that show something (the probe once a
pixel is probed, the curves once computed, the sweep once opened) pixel for pixel on one
matplotlib sheet under a caption line naming the image, model, class, map and parameters.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..dataset import dataset_format
from ..errors import HoliwidgetError
from ..figure import figure_format
from ..methods import LABELS
from ..outputs import atomic_output, check_output, figure_mark, is_marked_figure
from .downloads import confined_path
from .session import KINDS, Session

__all__ = ["caption", "default_name", "export_path", "save_sheet", "state_dataset"]

_CAPTION_PX = 34


def default_name(session: Session) -> str:
    """The export name of the current state (file-name safe)."""
    ds = session.ensure()
    image = str(ds["image"].values[0])
    settings = (
        f"tau{session.threshold:.2f}_m{session.median}_b{session.box}"
        if session.denoise
        else "fsd-off"
    )
    name = f"{image}_{session.provider.name}_class{session.target}_{settings}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def state_dataset(session: Session) -> xr.Dataset:
    """A copy of the session's state as data: the maps, PHA, M_f, ``lpw``, the input, the
    parameters, the settings (``attrs["explorer"]``: image, target, current map, probe,
    opacity, colormap, denoising on/off), the curves and the grid's AUCs when computed."""
    s = session
    ds = s.ensure().copy(deep=True)
    settings = {
        "image": s.image,
        "target": s.target,
        "layer": s.layer,
        "method": s.method,
        "probe": list(s.probe) if s.probe else None,
        "opacity": s.opacity,
        "colormap": s.cmap,
        "denoise": s.denoise,
    }
    ds.attrs["explorer"] = json.dumps(settings, sort_keys=True)
    if s.curves:
        fractions = np.asarray(s.curves["insertion"][0], dtype=np.float32)
        ds = ds.assign_coords(fraction=("fraction", fractions))
        for name, (_, ys, auc) in s.curves.items():
            ds[name] = (("fraction",), np.asarray(ys, dtype=np.float32), {"auc": auc})
    layers, methods = list(ds["layer"].values), list(ds["cam"].values)
    for k, kind in enumerate(KINDS if s.scores else ()):
        auc = np.full((len(methods), len(layers)), np.nan, dtype=np.float32)
        for (layer, method), values in s.scores.items():
            if layer in layers and method in methods:
                auc[methods.index(method), layers.index(layer)] = values[k]
        ds[f"{kind}_auc"] = (("cam", "layer"), auc, {"long_name": f"{kind} AUC"})
    return ds


def caption(session: Session) -> str:
    """One line: image, model, class and probability, the current map, the parameters."""
    ds = session.ensure()
    name = str(ds["target_name"].values[0]) if "target_name" in ds.coords else ""
    p = float(ds["probability"].values[0]) if "probability" in ds.coords else float("nan")
    return (
        f"{ds['image'].values[0]} | {session.provider.name} | class {session.target} {name} "
        f"(p {p:.3f}) | {LABELS.get(session.method, session.method)}, {session.layer} | "
        f"Holistic-CAM {session.denoising_text()} | holiwidget explorer"
    )


def export_path(text: str, kind: str, default: str, data: Path | None = None) -> Path:
    """The file of ``kind`` ("dataset" or "figure") that the export box's ``text`` names.

    Empty text: ``default``. A name ending in a format of that kind keeps it
    (``state.svg`` -> the figure ``state.svg``); any other gets the default (``.nc``,
    ``.png``) added, after dropping an extension of the other kind (``state.svg`` -> the
    dataset ``state.nc``). With a data folder ``data``, the path must lie inside it.
    """
    text = text.strip() or default
    path = confined_path(data, text, "export") if data is not None else Path(text).expanduser()

    def accepts(check: Callable[[Path], str]) -> bool:
        try:
            check(path)
        except HoliwidgetError:
            return False
        return True

    kinds = {"dataset": (dataset_format, ".nc"), "figure": (figure_format, ".png")}
    (own, suffix), (other, _) = kinds.pop(kind), *kinds.values()
    if accepts(own):
        return path
    if accepts(other):
        path = path.with_suffix("")
    return path.with_name(path.name + suffix)


def _pixels(fig: Figure) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
    buf.seek(0)
    with Image.open(buf) as tile:
        return np.asarray(tile.convert("RGB"))


def save_sheet(path: Path, rows: Sequence[Sequence[Figure]], text: str) -> Path:
    """Write ``rows`` of figures, left to right and top to bottom under the caption ``text``,
    to one figure file (format by extension), atomically; returns the path written."""
    fmt = figure_format(path)
    out = check_output(path, "figure")
    tiles = [[_pixels(fig) for fig in row] for row in rows if row]
    width = max(sum(t.shape[1] for t in row) for row in tiles)
    dpi = 100  # any: the sheet's pixels are the views' pixels
    line = Figure(figsize=(width / dpi, _CAPTION_PX / dpi), dpi=dpi, facecolor="white")
    line.text(8 / width, 0.5, text, va="center", ha="left", fontsize=10)
    FigureCanvasAgg(line)
    tiles.insert(0, [_pixels(line)])  # a raster line: the sheet is one image, pixel for pixel
    heights = [max(t.shape[0] for t in row) for row in tiles]
    height = sum(heights)
    sheet = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    top = 0
    for row, row_height in zip(tiles, heights, strict=True):
        x = 0
        for tile in row:  # figimage offsets count pixels from the sheet's bottom left
            sheet.figimage(tile, xo=x, yo=height - top - tile.shape[0], origin="upper")
            x += tile.shape[1]
        top += row_height
    with atomic_output(out, "figure", replaces=is_marked_figure) as part:
        sheet.savefig(part, format=fmt, dpi=dpi, facecolor="white", **figure_mark(fmt))
    return out
