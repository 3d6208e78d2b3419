"""The interactive explorer: core ipywidgets and ipympl canvases over one xarray dataset.

- :mod:`.state`: image sources, the pass cache and re-denoising (no widgets);
- :mod:`.views`: the linked matplotlib views, updated in place;
- :mod:`.curves`: insertion / deletion curves from :mod:`holiwidget.metrics`;
- :mod:`.app`: :class:`Explorer`, the controls that drive the views.
"""

from __future__ import annotations

from .app import Explorer

__all__ = ["Explorer"]
