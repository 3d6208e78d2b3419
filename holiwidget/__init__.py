"""holiwidget: Holistic-CAM class-activation maps at every depth of a CNN.

The main entry points:

- :func:`explain`: maps for several layers and methods, as an :class:`xarray.Dataset`.
- :func:`evaluate`: Insertion, Deletion, Over-all, ROAD and EPG of every method on an image set.
- :func:`sweep`: Holistic-CAM's sensitivity to its denoising parameters and pyramid, with
  :func:`sensitivity_table` and :func:`plot_sensitivity`.
- :func:`load_model`: torchvision classifiers with pretrained, file or random weights.
- :func:`holistic_map`: re-denoise a kept primary map with new parameters, no network pass.
- :func:`save_dataset` / :func:`open_dataset`: netCDF or zarr, written atomically.
- :class:`Explorer`: the interactive Jupyter explorer (imported on first use).
"""

from __future__ import annotations

from .dataset import open_dataset, save_dataset
from .engine import explain
from .errors import HoliwidgetError
from .evaluation import evaluate
from .layers import holistic_stage
from .methods import METHODS
from .methods.holistic import holistic_map, low_pass_wrap
from .models import load_model
from .pyramid import pyramid_sizes
from .samples import SAMPLES, load_sample
from .sweeps import paired_differences, plot_sensitivity, sensitivity_table, sweep

__all__ = [
    "METHODS",
    "SAMPLES",
    "Explorer",
    "HoliwidgetError",
    "evaluate",
    "explain",
    "holistic_map",
    "holistic_stage",
    "load_model",
    "load_sample",
    "low_pass_wrap",
    "open_dataset",
    "open_explorer",
    "paired_differences",
    "plot_sensitivity",
    "pyramid_sizes",
    "save_dataset",
    "sensitivity_table",
    "sweep",
]


def __getattr__(name: str) -> object:
    # The explorer pulls in ipywidgets and ipympl: imported only when asked for.
    if name in ("Explorer", "open_explorer"):
        from . import explorer

        return getattr(explorer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
