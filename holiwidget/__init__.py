"""holiwidget: Holistic-CAM class-activation maps at every depth of a CNN.

The main entry points:

- :func:`explain`: maps for several layers and methods, as an :class:`xarray.Dataset`.
- :func:`evaluate`: Insertion, Deletion, Over-all, ROAD and EPG of every method on an image set.
- :func:`sweep`: Holistic-CAM's sensitivity to its denoising parameters and pyramid, with
  :func:`sensitivity_table` and :func:`plot_sensitivity`.
- :func:`load_model`: torchvision classifiers with pretrained, file or random weights.
- :func:`holistic_map`: re-denoise a kept primary map with new parameters, no network pass.
- :func:`save_dataset` / :func:`open_dataset`: netCDF or zarr, written atomically.
- :class:`Explorer`: the interactive Jupyter explorer.

Each name is imported on first use (PEP 562), so that ``import holiwidget`` and the command
line's server commands (``holiwidget lab``, ``holiwidget app``, which run the explorer in a
kernel of their own) do not load torch, xarray or ipywidgets until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import HoliwidgetError

if TYPE_CHECKING:
    from .dataset import open_dataset, save_dataset
    from .engine import explain
    from .evaluation import evaluate
    from .explorer import Explorer, open_explorer
    from .layers import holistic_stage
    from .methods import METHODS
    from .methods.holistic import holistic_map, low_pass_wrap
    from .models import load_model
    from .pyramid import pyramid_sizes
    from .samples import SAMPLES, load_sample
    from .sweeps import paired_differences, plot_sensitivity, sensitivity_table, sweep

#: Public name -> the module that defines it.
_HOMES = {
    "open_dataset": "dataset",
    "save_dataset": "dataset",
    "explain": "engine",
    "evaluate": "evaluation",
    "Explorer": "explorer",
    "open_explorer": "explorer",
    "holistic_stage": "layers",
    "METHODS": "methods",
    "holistic_map": "methods.holistic",
    "low_pass_wrap": "methods.holistic",
    "load_model": "models",
    "pyramid_sizes": "pyramid",
    "SAMPLES": "samples",
    "load_sample": "samples",
    "paired_differences": "sweeps",
    "plot_sensitivity": "sweeps",
    "sensitivity_table": "sweeps",
    "sweep": "sweeps",
}

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
    home = _HOMES.get(name)
    if home is not None:
        value = getattr(importlib.import_module(f".{home}", __name__), name)
        globals()[name] = value  # looked up once
        return value
    try:  # a submodule not imported yet (holiwidget.images, ...)
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
