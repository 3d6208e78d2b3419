"""A sweep's results dataset, built from its per-image records.

Layout (every variable per image, so that images pair across settings)::

    score        (image, layer, scales, threshold, median, box, metric)   NaN: not computed
    extra_score  (image, layer, scales, setting, metric)   default, off, the filter ablation
    computed     (scales, threshold, median, box)          the design's computed cells
    explain_seconds (image, scales), score_seconds (image)

``scales`` is labelled by name (``224``, ``224..524``, ``224..924``) with the sides in
``scale_sides``; ``setting`` carries its kernels in ``setting_median`` / ``setting_box``
(0 for denoising off). The per-image coordinates are those of ``holiwidget evaluate``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..dataset import package_versions
from ..errors import HoliwidgetError
from ..evaluation.scoring import ImageRecord
from .grid import scale_label
from .scoring import SweepProtocol

__all__ = ["SCALARS", "build_sweep_results"]

#: The per-image scalars, kept as coordinates along ``image``.
SCALARS = ("label", "target", "prediction", "correct", "probability", "boxes", "centre_prior_epg")
_GRID_DIMS = ("layer", "scales", "threshold", "median", "box", "metric")
_DESCRIPTIONS = {
    "score": "per-image score of each grid setting (AUC for insertion/deletion, ROAD, EPG)",
    "extra_score": "per-image score of the extra settings (default, off, filter ablation)",
    "computed": "whether the design computes this cell (the others are NaN)",
    "explain_seconds": "time of the image's explain call per scale set",
    "score_seconds": "time of the image's whole scoring (explains, re-denoising, metrics)",
}


def build_sweep_results(
    records: Sequence[ImageRecord],
    protocol: SweepProtocol,
    skipped: dict[str, str],
    problems: Sequence[str] = (),
) -> xr.Dataset:
    """The results dataset of finished records (in the given order).

    Args:
        records: scored images (none with an error).
        protocol: the sweep's protocol.
        skipped: image -> why it was left out.
        problems: mismatches between the image files and the annotations.
    """
    done = list(records)
    if not done:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3])
        raise HoliwidgetError(f"no image could be scored ({reasons})")
    grid = protocol.grid
    extras = grid.extra_settings()
    rs, rt, rm, rb = grid.reference
    data = {
        "score": (("image", *_GRID_DIMS), np.stack([r.values["score"] for r in done])),
        "extra_score": (
            ("image", "layer", "scales", "setting", "metric"),
            np.stack([r.values["extra_score"] for r in done]),
        ),
        "computed": (("scales", "threshold", "median", "box"), grid.computed()),
        "explain_seconds": (
            ("image", "scales"),
            np.stack([r.values["explain_seconds"] for r in done]),
        ),
        "score_seconds": ("image", np.array([r.values["score_seconds"] for r in done], np.float64)),
    }
    coords = {
        "image": ("image", np.array([r.image for r in done], dtype=object)),
        "layer": ("layer", np.array(protocol.layers, dtype=object)),
        "scales": ("scales", np.array([scale_label(s) for s in grid.scale_sets], dtype=object)),
        "scale_sides": (
            "scales",
            np.array([",".join(map(str, s)) for s in grid.scale_sets], dtype=object),
        ),
        "threshold": ("threshold", np.asarray(grid.thresholds, dtype=np.float64)),
        "median": ("median", np.asarray(grid.medians, dtype=np.int64)),
        "box": ("box", np.asarray(grid.boxes, dtype=np.int64)),
        "metric": ("metric", np.array(protocol.metrics, dtype=object)),
        "setting": ("setting", np.array(list(extras), dtype=object)),
        "setting_median": (
            "setting",
            np.array([0 if d is None else d.median for d in extras.values()]),
        ),
        "setting_box": ("setting", np.array([0 if d is None else d.box for d in extras.values()])),
        **{k: ("image", np.array([r.values[k] for r in done])) for k in SCALARS},
    }
    ds = xr.Dataset(data, coords=coords)
    for name, text in _DESCRIPTIONS.items():
        ds[name].attrs["long_name"] = text
    ds.attrs = {
        "title": "holiwidget sensitivity sweep",
        "protocol": protocol.to_json(),
        "reference": json.dumps(
            {
                "scales": scale_label(grid.scale_sets[rs]),
                "threshold": grid.thresholds[rt],
                "median": grid.medians[rm],
                "box": grid.boxes[rb],
            }
        ),
        "baseline": json.dumps({"scales": scale_label(grid.scale_sets[rs]), "setting": "default"}),
        "skipped": json.dumps(skipped, sort_keys=True),
        "input_problems": json.dumps(list(problems)),
        "versions": json.dumps(package_versions(), sort_keys=True),
        "scores": "insertion/deletion: AUC of the curve over the changed fraction; overall = "
        "insertion - deletion; road: (mean LeRF - mean MoRF) / 2, each setting with the "
        "image's own noise (protocol seed); epg: energy in the boxes. Paired differences are "
        "taken from extra_score at setting 'default' and the baseline scale set "
        "(attrs['baseline']).",
    }
    return ds
