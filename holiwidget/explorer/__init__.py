"""The interactive explorer: core ipywidgets and canvases of our own over one xarray dataset.

Data flows one way: controls -> session -> views.

- :mod:`.sources`: the images on offer; :mod:`.passes`: predictions, layers, the pass cache;
  :mod:`.denoising`: re-denoising a dataset in place; :mod:`.curves`: insertion / deletion;
- :mod:`.providers`: where maps come from (a model, or a saved dataset);
- :mod:`.session`: :class:`Session`, the state without any widget; :mod:`.search`: class search;
- :mod:`.controls`: the controls from a table of specs; :mod:`.layout`: the page;
- :mod:`.canvas`, :mod:`.views`, :mod:`.grid`, :mod:`.sensitivity`: the views;
  :mod:`.board`: the views drawn from a session; :mod:`.readouts`: status and probe text;
- :mod:`.export`: export names and the captioned sheet; :mod:`.downloads`: a shared
  deployment's data folder and browser downloads;
- :mod:`.app`: :class:`Explorer`, the wiring; :mod:`.hosted`: :func:`open_explorer`.
"""

from __future__ import annotations

from .session import Session

__all__ = ["ENVIRONMENT", "Explorer", "Session", "open_explorer"]


def __getattr__(name: str) -> object:
    # The app pulls in ipywidgets and anywidget; the session and its parts need neither.
    if name == "Explorer":
        from .app import Explorer

        return Explorer
    if name in ("ENVIRONMENT", "open_explorer"):
        from . import hosted

        return getattr(hosted, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
