"""Evaluation metrics for saliency maps: one module per family.

- :mod:`.causal`: Insertion, Deletion (RISE protocol) and Over-all = Insertion - Deletion.
- :mod:`.road`: ROAD with noisy linear imputation (MoRF, LeRF, combined score).
- :mod:`.pointing`: the energy-based pointing game and its centre-prior baseline.
- :mod:`.sanity`: cascading model-parameter randomisation (Spearman, SSIM).
"""

from __future__ import annotations

from .causal import (
    CausalCurves,
    CausalScores,
    auc,
    deletion,
    insertion,
    insertion_deletion,
    overall,
)
from .pointing import (
    ImageBoxes,
    box_mask,
    centre_prior,
    centre_prior_epg,
    clip_boxes,
    energy_pointing_game,
    read_annotations,
)
from .road import PERCENTILES, RoadScores, impute, removal_masks, road_combined, road_scores
from .sanity import cascade_groups, cascading_randomization, plot_sanity

__all__ = [
    "PERCENTILES",
    "CausalCurves",
    "CausalScores",
    "ImageBoxes",
    "RoadScores",
    "auc",
    "box_mask",
    "cascade_groups",
    "cascading_randomization",
    "centre_prior",
    "centre_prior_epg",
    "clip_boxes",
    "deletion",
    "energy_pointing_game",
    "impute",
    "insertion",
    "insertion_deletion",
    "overall",
    "plot_sanity",
    "read_annotations",
    "removal_masks",
    "road_combined",
    "road_scores",
]
