"""The fusion: one layer's per-scale captures -> Holistic-CAM's PHA and M_f, and CAMERAS.

- :mod:`.fuser`: :class:`LayerFuser`, the one entry point (the engine calls it per layer);
- :mod:`.policy`: when a layer is held or summed, and every memory and tiling constant;
- :mod:`.compiled`: the CPU's compiled loops (numba);
- :mod:`.products`: the torch way for any device, :mod:`.banded` (fine stacks) or
  :mod:`.gram` (coarse stacks);
- :mod:`.summed`: shallow layers summed over the scales as their passes end;
- :mod:`.bilinear`: bilinear interpolation as matrices, bands and taps.
"""

from __future__ import annotations

from .fuser import BACKENDS, FusedLayer, LayerFuser, resolve_backend

__all__ = ["BACKENDS", "FusedLayer", "LayerFuser", "resolve_backend"]
