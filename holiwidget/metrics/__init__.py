"""Evaluation metrics for saliency maps: one module per family.

- :mod:`.causal`: Insertion, Deletion (RISE protocol) and Over-all = Insertion - Deletion.
- :mod:`.road`: ROAD with noisy linear imputation (MoRF, LeRF, combined score).
- :mod:`.pointing`: the energy-based pointing game and its centre-prior baseline.

The sanity check (cascading randomisation, which runs the engine) and the annotation CSV
reader live in :mod:`holiwidget.evaluation`.
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
from .pointing import box_mask, centre_prior, centre_prior_epg, energy_pointing_game
from .road import PERCENTILES, RoadScores, impute, removal_masks, road_combined, road_scores

__all__ = [
    "PERCENTILES",
    "CausalCurves",
    "CausalScores",
    "RoadScores",
    "auc",
    "box_mask",
    "centre_prior",
    "centre_prior_epg",
    "deletion",
    "energy_pointing_game",
    "impute",
    "insertion",
    "insertion_deletion",
    "overall",
    "removal_masks",
    "road_combined",
    "road_scores",
]
