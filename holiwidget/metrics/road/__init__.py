"""ROAD: RemOve And Debias (Rong et al., ICML 2022), with noisy linear imputation.

- :mod:`.scores`: the removal masks, the MoRF / LeRF scores and the combined score;
- :mod:`.imputation`: noisy linear imputation of one image under several masks;
- :mod:`.system`: the imputation system (8-neighbour weights) and its direct solve, the
  reference;
- :mod:`.dissection`: the nested dissection of the pixel grid, planned once per image size;
- :mod:`.multifrontal`: the batched multifrontal solve of all masks of an image.
"""

from __future__ import annotations

from .imputation import impute
from .scores import PERCENTILES, RoadScores, removal_masks, road_combined, road_scores

__all__ = [
    "PERCENTILES",
    "RoadScores",
    "impute",
    "removal_masks",
    "road_combined",
    "road_scores",
]
