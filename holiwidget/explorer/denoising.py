"""Re-denoising the explorer's current dataset in place, from the kept PHA and M_f.

The explorer's dataset is one image of :func:`holiwidget.explain`'s output plus ``lpw``,
Holistic-CAM's low-pass wrap per layer (the factor, 0..255, the map is multiplied by).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xarray as xr

from ..methods.holistic import holistic_map

__all__ = ["explorer_dataset", "redenoise", "with_lpw"]


def with_lpw(ds: xr.Dataset) -> xr.Dataset:
    """Add an (image, layer, y, x) uint8 ``lpw`` variable (all 255) if the dataset lacks it."""
    if "primary" in ds.data_vars and "lpw" not in ds.data_vars:
        shape = ds["primary"].shape
        ds["lpw"] = (("image", "layer", "y", "x"), np.full(shape, 255, dtype=np.uint8))
        ds["lpw"].attrs = {"long_name": "Holistic-CAM low-pass wrap (0..255)"}
    return ds


def redenoise(
    ds: xr.Dataset,
    threshold: float,
    median: int,
    box: int,
    denoise: bool,
    *,
    first: int | None = None,
    after_first: Callable[[], None] | None = None,
) -> None:
    """Recompute Holistic-CAM maps and low-pass wraps in place from the kept PHA and M_f.

    No network pass: :func:`holiwidget.holistic_map` per (image, layer). Updates
    ``attribution`` (cam ``holistic``, when shown), ``lpw`` and the ``parameters`` attribute.

    ``first``: this layer index is done first, then ``after_first`` is called (to show it)
    while a worker thread goes on with the other layers; the calling thread takes over any
    layer the worker has not begun and alone writes into ``ds``. OpenCV's median filter
    and numpy's array loops release the GIL, so on two cores the layers take about half
    the time.
    """
    if "primary" not in ds.data_vars:
        return
    with_lpw(ds)
    prim, fund = ds["primary"].values, ds["fundamental"].values
    lpw, att = ds["lpw"].values, ds["attribution"].values
    cams = [str(c) for c in ds["cam"].values]
    hi = cams.index("holistic") if "holistic" in cams else None
    cells = [(i, li) for i in range(prim.shape[0]) for li in range(prim.shape[1])]
    head = [c for c in cells if c[1] == first]

    def _one(cell: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        return holistic_map(prim[cell], fund[cell], threshold, median, box, denoise=denoise)

    def _write(cell: tuple[int, int], maps: tuple[np.ndarray, np.ndarray]) -> None:
        lpw[cell] = maps[1]
        if hi is not None:
            att[cell[0], hi, cell[1]] = maps[0]

    pending = [(c, _worker().submit(_one, c)) for c in cells if c[1] != first]
    for cell in head:
        _write(cell, _one(cell))
    if after_first is not None:
        after_first()
    for cell, future in reversed(pending):  # the worker takes them from the front
        _write(cell, _one(cell) if future.cancel() else future.result())
    params = json.loads(ds.attrs.get("parameters", "{}"))
    params.update(
        threshold=float(threshold), median=int(median), box=int(box), denoise=bool(denoise)
    )
    ds.attrs["parameters"] = json.dumps(params, sort_keys=True)


@functools.cache
def _worker() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="holiwidget-redenoise")


def explorer_dataset(
    ds: xr.Dataset, threshold: float, median: int, box: int, denoise: bool
) -> xr.Dataset:
    """Make ``ds`` (one image from explain) the explorer's: ``lpw`` added, its layers and
    methods recorded in ``attrs["parameters"]``, re-denoised with the given parameters."""
    with_lpw(ds)
    params = json.loads(ds.attrs.get("parameters", "{}"))
    params.update(
        layers=[str(v) for v in ds["layer"].values], methods=[str(v) for v in ds["cam"].values]
    )
    ds.attrs["parameters"] = json.dumps(params, sort_keys=True)
    redenoise(ds, threshold, median, box, denoise)
    return ds
