"""Parameter-sensitivity sweeps of Holistic-CAM: ``holiwidget sweep``.

- :mod:`.grid`: the settings (tau, median and box kernels, pyramids; full or star design).
- :mod:`.scoring`: the protocol, and one image's settings scored (one explain per pyramid).
- :mod:`.run`: :func:`sweep`, on the runner of ``holiwidget evaluate``.
- :mod:`.results`: the labelled results dataset.
- :mod:`.summary`: the paper's tables and paired differences from the default.
- :mod:`.plots`: heatmaps; :mod:`.report`: the summary files beside the results.
"""

from __future__ import annotations

from .grid import DESIGNS, EXTRAS, KERNELS, Grid, parse_scale_sets, parse_values
from .plots import plot_sensitivity
from .report import sweep_summary_paths, write_sweep_summary
from .run import SweepPlan, plan_sweep, sweep
from .scoring import SWEEP_METRICS, SWEEP_METRICS_ALL, SweepProtocol, score_sweep_image
from .summary import paired_differences, sensitivity_table, sweep_summary_markdown

__all__ = [
    "DESIGNS",
    "EXTRAS",
    "KERNELS",
    "SWEEP_METRICS",
    "SWEEP_METRICS_ALL",
    "Grid",
    "SweepPlan",
    "SweepProtocol",
    "paired_differences",
    "parse_scale_sets",
    "parse_values",
    "plan_sweep",
    "plot_sensitivity",
    "score_sweep_image",
    "sensitivity_table",
    "sweep",
    "sweep_summary_markdown",
    "sweep_summary_paths",
    "write_sweep_summary",
]
