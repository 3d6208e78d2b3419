"""Evaluation of CAM methods on labelled image sets: ``holiwidget evaluate``.

- :mod:`.annotations`: the annotation CSV (each image's label and boxes).
- :mod:`.inputs`: image files matched to an annotation CSV.
- :mod:`.scoring`: the protocol, and one image's maps scored with every metric.
- :mod:`.store`: per-image results kept on disk as they finish (resuming), the results dataset.
- :mod:`.summary`: the paper-style table (x100, mean and 95 % interval), markdown and CSV.
- :mod:`.run`: :func:`evaluate`, serially or on a dask.distributed cluster.
- :mod:`.sanity`: the cascading model-parameter randomisation test (Spearman, SSIM).
"""

from __future__ import annotations

from .annotations import ImageBoxes, clip_boxes, read_annotations
from .inputs import EvaluationItem, collect_inputs
from .run import evaluate, parse_metrics
from .sanity import cascade_groups, cascading_randomization, plot_sanity, randomize_group
from .scoring import METRICS, TARGETS, Protocol, score_image
from .summary import summary_markdown, summary_paths, summary_table, write_summary

__all__ = [
    "METRICS",
    "TARGETS",
    "EvaluationItem",
    "ImageBoxes",
    "Protocol",
    "cascade_groups",
    "cascading_randomization",
    "clip_boxes",
    "collect_inputs",
    "evaluate",
    "parse_metrics",
    "plot_sanity",
    "randomize_group",
    "read_annotations",
    "score_image",
    "summary_markdown",
    "summary_paths",
    "summary_table",
    "write_summary",
]
