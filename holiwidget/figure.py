"""Static figures of an attribution dataset: the input and one overlay per layer and method.

Built with matplotlib's object-oriented API only (:class:`matplotlib.figure.Figure`, no
pyplot and no global state), so figures can be made headless, in threads and in servers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from .errors import HoliwidgetError
from .methods import LABELS
from .outputs import atomic_output, check_output, figure_mark, is_marked_figure

__all__ = ["FIGURE_FORMATS", "explain_figure", "figure_format", "save_figure"]

#: Colormap of the attribution overlays.
CMAP = "jet"
#: Opacity of the attribution overlays.
ALPHA = 0.5
# Side of one panel, in inches.
_PANEL = 2.4
#: File formats save_figure writes (those matplotlib supports without LaTeX or raw buffers).
FIGURE_FORMATS = ("png", "pdf", "svg", "svgz", "jpg", "jpeg", "tif", "tiff", "webp", "eps", "ps")


def _select_image(ds: xr.Dataset, image: int | str) -> int:
    """The position of ``image`` (an index or an image id) along the ``image`` dimension."""
    ids = [str(i) for i in ds["image"].values]
    if isinstance(image, str):
        if image not in ids:
            raise HoliwidgetError(
                f"no image {image!r} in the dataset; choose one of {', '.join(ids)}"
            )
        return ids.index(image)
    if isinstance(image, bool) or not isinstance(image, (int, np.integer)):
        raise HoliwidgetError(f"image must be an index or an image id, got {type(image).__name__}")
    if not -len(ids) <= int(image) < len(ids):
        raise HoliwidgetError(
            f"image index {int(image)} is out of range for {len(ids)} image(s) (0..{len(ids) - 1})"
        )
    return int(image) % len(ids)


def _title(ds: xr.Dataset, index: int) -> str:
    """Suptitle: image id, target class (name and index) and its probability."""
    image_id = str(ds["image"].values[index])
    parts = [image_id]
    if "target_name" in ds.coords:
        name = str(ds["target_name"].values[index])
        if "target" in ds.coords:
            name += f" (class {int(ds['target'].values[index])})"
        parts.append(name)
    text = ": ".join(parts)
    if "probability" in ds.coords:
        text += f", p = {float(ds['probability'].values[index]):.3f}"
    return text


def explain_figure(ds: xr.Dataset, image: int | str = 0) -> Figure:
    """A grid figure of one image's attribution maps.

    The first column holds the input image (top left); the other columns hold one overlay
    per method (columns) and layer (rows): the input with the attribution map drawn on top
    in the ``jet`` colormap at 50 % opacity, titled with the method and layer. The figure
    title names the image, the target class and its probability. A shared colorbar shows
    the attribution scale [0, 1].

    Args:
        ds: a dataset from :func:`holiwidget.explain` or :func:`holiwidget.open_dataset`,
            with ``input`` (image, y, x, rgb) and ``attribution`` (image, cam, layer, y, x).
        image: the image to show: its position along ``image`` or its id.

    Returns:
        The figure (not attached to pyplot; save it with :func:`save_figure` or
        ``fig.savefig``).

    Raises:
        HoliwidgetError: the dataset lacks ``input`` or ``attribution``, or ``image`` names
            no image in it.
    """
    missing = [v for v in ("input", "attribution") if v not in ds.data_vars]
    if missing:
        raise HoliwidgetError(
            f"the dataset has no {' or '.join(missing)} variable; pass a dataset made by explain"
        )
    index = _select_image(ds, image)
    rgb = np.asarray(ds["input"].isel(image=index).transpose("y", "x", "rgb").values)
    maps = ds["attribution"].isel(image=index).transpose("cam", "layer", "y", "x")
    methods = [str(m) for m in maps["cam"].values]
    layers = [str(layer) for layer in maps["layer"].values]
    values = np.asarray(maps.values, dtype=np.float32)

    rows, cols = max(1, len(layers)), 1 + len(methods)
    fig = Figure(figsize=(_PANEL * cols + 0.8, _PANEL * rows + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].imshow(rgb)
    axes[0, 0].set_title("input", fontsize=9)
    for r in range(1, rows):
        axes[r, 0].set_axis_off()
    overlay = None
    for li, layer in enumerate(layers):
        for mi, method in enumerate(methods):
            ax = axes[li, mi + 1]
            ax.imshow(rgb)
            overlay = ax.imshow(values[mi, li], cmap=CMAP, alpha=ALPHA, vmin=0.0, vmax=1.0)
            ax.set_title(f"{LABELS.get(method, method)}\n{layer}", fontsize=9)
    if overlay is not None:
        fig.colorbar(overlay, ax=axes[:, 1:].ravel().tolist(), shrink=0.8, label="attribution")
    fig.suptitle(_title(ds, index), fontsize=11)
    return fig


def figure_format(path: str | os.PathLike) -> str:
    """The image format :func:`save_figure` writes for ``path``, from its extension.

    Args:
        path: the figure file.

    Returns:
        The format name, e.g. ``"png"``.

    Raises:
        HoliwidgetError: the extension is missing or not a supported image format.
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        raise HoliwidgetError(
            f"cannot tell the image format of {path}; name the figure *.png, *.pdf, *.svg or *.jpg"
        )
    return suffix


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: float | None = None) -> Path:
    """Write a figure atomically: the output appears whole or not at all.

    The figure is drawn into a temporary file in the output's folder, which is renamed into
    place only when complete. Its metadata carries holiwidget's mark
    (:func:`holiwidget.outputs.figure_mark`); an existing file is replaced only if it has
    that mark (a figure written here before), anything else is refused.

    Args:
        fig: the figure.
        path: the output file; its extension picks the format (png, pdf, svg, jpg, ...).
        dpi: resolution for raster formats (default: the figure's own).

    Returns:
        The path written.

    Raises:
        HoliwidgetError: unknown extension, missing folder, a file under the name that
            holiwidget did not write as a figure, or a file that cannot be written.
    """
    fmt = figure_format(path)
    out = check_output(path, "figure", replaces=is_marked_figure)
    with atomic_output(out, "figure", replaces=is_marked_figure) as part:
        dpi_ = dpi if dpi is not None else "figure"
        fig.savefig(part, format=fmt, dpi=dpi_, **figure_mark(fmt))
    return out
