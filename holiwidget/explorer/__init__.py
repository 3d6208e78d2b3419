"""The interactive explorer: core ipywidgets and ipympl canvases over one xarray dataset.

- :mod:`.state`: image sources, the pass cache and re-denoising (no widgets);
- :mod:`.views`: the linked matplotlib views, updated in place;
- :mod:`.curves`: insertion / deletion curves from :mod:`holiwidget.metrics`;
- :mod:`.app`: :class:`Explorer`, the controls that drive the views;
- :mod:`.downloads`: a shared deployment's data folder, exports as browser downloads;
- :mod:`.hosted`: :func:`open_explorer`, the notebooks' and ``holiwidget app``'s entry point.
"""

from __future__ import annotations

from .app import Explorer
from .hosted import ENVIRONMENT, open_explorer

__all__ = ["ENVIRONMENT", "Explorer", "open_explorer"]
