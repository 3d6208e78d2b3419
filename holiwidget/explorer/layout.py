"""The explorer's page: a CSS grid, fixed from the first render.

::

    header   title, progress bar, status line
    sidebar  | main: overlay, low-pass wrap, [probe plot, probe table, curves],
             |       grid, sensitivity (tiles in a row, wrapping where the page is narrow)

Every tile has a fixed pixel size (the probe's table a fixed-height box), so nothing moves
when the probe, the curves or a sweep appear: where a tile sits depends only on the page's
width. Text colours come from JupyterLab's theme variables (legible in the dark theme).
"""

from __future__ import annotations

import ipywidgets as W

from .controls import Controls

__all__ = ["SIDEBAR_PX", "build_layout"]

SIDEBAR_PX, RIGHT_PX = 360, 410


def _section(title: str, *rows: W.Widget) -> W.VBox:
    head = W.HTML(f"<b>{title}</b>", layout=W.Layout(margin="8px 0 2px 0"))
    box = W.VBox([head, *rows], layout=W.Layout(width=f"{SIDEBAR_PX - 10}px"))
    box.add_class("holiwidget-section")
    return box


def _row(*children: W.Widget) -> W.HBox:
    return W.HBox(list(children), layout=W.Layout(align_items="center", flex_flow="row nowrap"))


def _fixed(widget: W.Widget, width: int, height: int) -> W.Box:
    """A box of a fixed size holding ``widget`` (scrolls inside when its content is larger)."""
    return W.Box(
        [widget],
        layout=W.Layout(width=f"{width}px", height=f"{height}px", overflow="auto", flex="0 0 auto"),
    )


def build_layout(c: Controls, canvases: dict[str, W.Widget]) -> W.GridBox:
    """The page: the controls ``c`` and the views' canvases (by view name) in a fixed grid."""
    canvases = {
        name: canvas if isinstance(canvas, W.DOMWidget) else W.HTML(f"<i>{name}</i>")
        for name, canvas in canvases.items()
    }  # Agg canvases (no browser) hold a place
    for name, canvas in canvases.items():
        canvas.add_class(f"holiwidget-view-{name}")
    header = W.HBox(
        [
            W.HTML("<b>holiwidget explorer</b>: Holistic-CAM at every depth"),
            c.progress,
            c.status,
        ],
        layout=W.Layout(grid_area="header", align_items="center", height="52px", overflow="hidden"),
    )
    c.progress.layout.width = "180px"
    c.progress.layout.flex = "0 0 auto"
    c.status.layout.flex = "1 1 auto"
    c.status.layout.max_height = "48px"
    c.status.layout.overflow = "hidden"
    sidebar = W.VBox(
        [
            _section(
                "Image",
                c.image,
                _row(c.previous_image, c.position, c.next_image),
                _row(c.folder, c.load_folder),
                c.upload,
            ),
            _section("Class", c.target, c.search),
            _section("Maps", c.methods, c.layers, c.layer, c.method),
            _section("Denoising (FSD)", c.threshold, c.median, c.box, _row(c.denoise, c.reset)),
            _section("Look", c.opacity, c.colormap),
            _section("Scores", _row(c.curves_button, c.score_button)),
            _section("Sensitivity", _row(c.sweep_path, c.open_sweep), c.sweep_metric),
            _section(
                "Export",
                c.export_path,
                _row(c.save_dataset_button, c.save_figure_button),
                c.download,
            ),
        ],
        layout=W.Layout(grid_area="sidebar", width=f"{SIDEBAR_PX}px", overflow="hidden"),
    )
    c.position.layout.width = "200px"
    c.position.layout.margin = "0 8px"
    right = W.VBox(
        [canvases["probe"], _fixed(c.probe, RIGHT_PX - 10, 124), canvases["curves"]],
        layout=W.Layout(flex="0 0 auto", margin="0 0 8px 0"),
    )
    tiles = [canvases["overlay"], canvases["lpw"], right, canvases["grid"], canvases["sensitivity"]]
    for tile in tiles:
        tile.layout.margin = "0 12px 8px 0"
    for wide in ("grid", "sensitivity"):  # wider than the page: scrolled sideways, not cut
        canvases[wide].layout.max_width = "100%"
        canvases[wide].layout.overflow = "auto hidden"
    main = W.HBox(
        tiles,
        layout=W.Layout(grid_area="main", flex_flow="row wrap", align_items="flex-start"),
    )
    page = W.GridBox(
        [header, sidebar, main],
        layout=W.Layout(
            grid_template_columns=f"{SIDEBAR_PX}px minmax(0, 1fr)",
            grid_template_rows="56px auto",
            grid_template_areas='"header header" "sidebar main"',
            grid_gap="4px 12px",
            width="100%",
        ),
    )
    page.add_class("holiwidget-explorer")
    return page
