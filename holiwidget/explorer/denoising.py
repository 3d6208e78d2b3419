"""Re-denoising the explorer's current dataset in place, from the kept PHA and M_f.

The explorer's dataset is one image of :func:`holiwidget.explain`'s output plus ``lpw``,
Holistic-CAM's low-pass wrap per layer (the factor, 0..255, the map is multiplied by).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

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
    layers: Sequence[int] | None = None,
) -> None:
    """Recompute Holistic-CAM maps and low-pass wraps in place from the kept PHA and M_f.

    No network pass: :func:`holiwidget.holistic_map` per (image, layer). Updates
    ``attribution`` (cam ``holistic``, when shown), ``lpw`` and the ``parameters`` attribute.
    ``layers``: only these layer indices (None: all).
    """
    if "primary" not in ds.data_vars:
        return
    with_lpw(ds)
    prim = ds["primary"].values
    fund = ds["fundamental"].values
    lpw = ds["lpw"].values
    att = ds["attribution"].values
    cams = [str(c) for c in ds["cam"].values]
    hi = cams.index("holistic") if "holistic" in cams else None
    for i in range(prim.shape[0]):
        for li in range(prim.shape[1]) if layers is None else layers:
            cam, wrap = holistic_map(
                prim[i, li], fund[i, li], threshold, median, box, denoise=denoise
            )
            lpw[i, li] = wrap
            if hi is not None:
                att[i, hi, li] = cam
    params = json.loads(ds.attrs.get("parameters", "{}"))
    params.update(
        threshold=float(threshold), median=int(median), box=int(box), denoise=bool(denoise)
    )
    ds.attrs["parameters"] = json.dumps(params, sort_keys=True)


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
