"""The explorer's canvas in the page, without a browser: the page's messages become
matplotlib events on the real views, a frame is a PNG of the pixels that changed and
rebuilds the figure, and the overlay's image draws matplotlib's pixels
(tests/test_explorer_browser.py drives it in chromium)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from holiwidget.explorer import Explorer
from holiwidget.explorer.canvas import PixelImage
from holiwidget.explorer.surface import (
    WHOLE_SHARE,
    Surface,
    SurfaceCanvas,
    changed_box,
    frame_message,
)


@pytest.fixture
def explorer(tiny) -> Explorer:
    ex = Explorer(tiny, methods=("holistic", "gradcam"))
    ex.dataset  # noqa: B018 (computes the first maps)
    assert ex.last_error is None, ex.last_error
    for frame in ex.views.frames.values():
        frame.full()  # as in the page: every figure drawn once
    return ex


def _page(canvas: SurfaceCanvas, kind: str, ax, x: float, y: float, **extra: object) -> tuple:
    """The page's message for a mouse event at data (x, y) of ``ax`` (or, with ``ax`` None,
    at figure pixels (x, y) from the bottom); returns those pixels."""
    px, py = (x, y) if ax is None else ax.transData.transform((x, y))
    message = {"type": kind, "x": px, "y": canvas.figure.bbox.height - py, "button": 1}
    canvas._received(canvas.widget, {**message, **extra}, [])
    return px, py


def test_the_views_have_canvases_of_our_own_and_send_whole_pngs(explorer: Explorer) -> None:
    widgets = explorer.views.canvases()
    for name, figure in explorer.views.figures.items():
        canvas = figure.canvas
        assert isinstance(canvas, SurfaceCanvas) and widgets[name] is canvas.widget
        assert isinstance(canvas.widget, Surface)
        assert (canvas.widget.width, canvas.widget.height) == canvas.get_width_height()
        # what the page was sent, and is sent whole again when a view of it is shown
        shown = np.asarray(canvas.get_renderer().buffer_rgba())
        np.testing.assert_array_equal(canvas._shown, shown)
        content, buffers = frame_message(None, canvas._shown)
        assert content == {"type": "frame", "x": 0, "y": 0, "whole": True}
        np.testing.assert_array_equal(_page_after(None, (content, buffers)), shown)
    assert widgets["overlay"].wheel and widgets["overlay"].drag
    assert not widgets["grid"].wheel and not widgets["grid"].drag
    assert widgets["grid"].cursor == "crosshair" and "probe" in widgets["grid"].hint


def _page_after(page: np.ndarray | None, message: tuple[dict, list[bytes]]) -> np.ndarray:
    """The page's canvas after a frame message, as surface.js draws it."""
    content, (data,) = message
    with Image.open(io.BytesIO(data)) as png:
        pixels = np.asarray(png.convert("RGBA"))
    if content["whole"]:
        return pixels.copy()
    page = page.copy()
    x, y = content["x"], content["y"]
    page[y : y + pixels.shape[0], x : x + pixels.shape[1]] = pixels
    return page


def test_a_frame_is_the_box_that_changed_and_rebuilds_the_figure(explorer: Explorer) -> None:
    views, names = explorer.views, ("overlay", "grid", "lpw", "probe")

    def pixels(name: str) -> np.ndarray:
        return np.asarray(views.figures[name].canvas.get_renderer().buffer_rgba()).copy()

    page = {name: pixels(name) for name in names}
    sizes = {}
    grid = views.grid
    step = grid.cell[0] + 6
    for move in (
        lambda: setattr(explorer.threshold, "value", 0.3),  # the Holistic-CAM maps change
        lambda: _page(views.figures["overlay"].canvas, "press", views.overlay.ax, 30, 40),
        lambda: _page(views.figures["grid"].canvas, "press", grid.ax, step + 14.7, 49.8),
        lambda: setattr(explorer.box, "value", 61),
    ):
        move()
        assert explorer.last_error is None, explorer.last_error
        for name in names:
            views.frames[name].blit()
            now = pixels(name)
            np.testing.assert_array_equal(views.figures[name].canvas._shown, now)
            message = frame_message(page[name], now)
            if message is None:
                assert (page[name] == now).all(), name
                continue
            page[name] = _page_after(page[name], message)
            np.testing.assert_array_equal(page[name], now, err_msg=name)
            with Image.open(io.BytesIO(message[1][0])) as png:
                sizes.setdefault(name, []).append(png.size[0] * png.size[1] / now[..., 0].size)
    # After a slider move the grid's frame is its Holistic-CAM column (one of its two
    # methods here), not the whole grid.
    assert sizes["grid"][0] < 0.6
    box = changed_box(np.zeros((4, 6, 4), np.uint8), np.zeros((4, 6, 4), np.uint8))
    assert box is None
    changed = np.zeros((4, 6, 4), np.uint8)
    changed[1, 2, 3] = changed[2, 4, 0] = 1
    assert changed_box(np.zeros_like(changed), changed) == (slice(1, 3), slice(2, 5))
    # A box over more than WHOLE_SHARE of the figure, or another size: the whole image.
    big = np.ones_like(changed)
    assert frame_message(np.zeros_like(changed), big)[0]["whole"] == (WHOLE_SHARE < 1)
    assert frame_message(np.zeros((3, 6, 4), np.uint8), big)[0]["whole"] is True
    with pytest.raises(ValueError, match="one size"):
        changed_box(np.zeros((3, 6, 4), np.uint8), big)


def test_page_clicks_probe_and_pick_a_grid_cell(explorer: Explorer) -> None:
    ex, views = explorer, explorer.views
    overlay = views.figures["overlay"].canvas
    _page(overlay, "press", views.overlay.ax, 30, 40)
    assert ex.session.probe == (40, 30)
    grid = views.grid
    step = grid.cell[0] + 6
    _page(views.figures["grid"].canvas, "press", grid.ax, step + 14.7, 2 * step + 49.8)
    assert (ex.session.layer, ex.session.method) != ("stage1", "holistic")
    assert ex.last_error is None, ex.last_error
    probe = ex.session.probe
    # A shift-press (a pan) and the second press of a double click do not probe.
    _page(overlay, "press", views.overlay.ax, 5, 5, shift=True)
    _page(overlay, "release", views.overlay.ax, 5, 5)
    _page(overlay, "press", views.overlay.ax, 6, 6, dblclick=True)
    assert ex.session.probe == probe
    # Unknown or malformed messages are ignored.
    overlay._received(overlay.widget, {"type": "press"}, [])
    overlay._received(overlay.widget, {"type": "bogus"}, [])
    overlay._received(overlay.widget, {"type": "scroll", "x": 5, "y": 5, "step": "up"}, [])
    overlay._received(overlay.widget, {"type": "press", "x": "a", "y": None}, [])
    assert ex.session.probe == probe and ex.last_error is None


def test_the_overlay_zooms_pans_and_shows_the_whole_image_again(explorer: Explorer) -> None:
    views = explorer.views
    ax, canvas = views.overlay.ax, views.figures["overlay"].canvas
    height, width = views.overlay.map.shape
    whole = (ax.get_xlim(), ax.get_ylim())
    assert whole == ((-0.5, width - 0.5), (height - 0.5, -0.5))
    _page(canvas, "scroll", ax, width / 4, height / 4, step=1)  # the wheel up: zoom in
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x1 - x0 == pytest.approx(0.8 * width) and y0 - y1 == pytest.approx(0.8 * height)
    assert x0 < width / 4 < x1  # about the pointer
    # A shift-drag moves the view with the pointer: 10 image pixels to the right (within a
    # screen pixel: matplotlib's events are at whole screen pixels).
    limits, ylimits = ax.get_xlim(), ax.get_ylim()
    one_pixel = (limits[1] - limits[0]) / ax.bbox.width
    _page(canvas, "press", ax, width / 2, height / 2, shift=True)
    end = _page(canvas, "move", ax, width / 2 + 10, height / 2)
    _page(canvas, "release", None, *end)  # where the last move was
    panned = ax.get_xlim()
    assert panned == pytest.approx((limits[0] - 10, limits[1] - 10), abs=one_pixel)
    assert ax.get_ylim() == pytest.approx(ylimits, abs=one_pixel)
    _page(canvas, "move", ax, width / 2 + 30, height / 2)  # after the release: no pan
    assert ax.get_xlim() == panned
    _page(canvas, "press", ax, width / 2, height / 2, dblclick=True)
    assert (ax.get_xlim(), ax.get_ylim()) == whole
    _page(canvas, "scroll", ax, width / 2, height / 2, step=1)
    _page(canvas, "scroll", ax, width / 2, height / 2, step=-1)
    _page(canvas, "scroll", ax, width / 2, height / 2, step=-1)  # out past the whole image
    assert (ax.get_xlim(), ax.get_ylim()) == whole


def _drawn(data: np.ndarray, kind: str, limits: tuple | None = None) -> np.ndarray:
    fig = Figure(figsize=(4.3, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.02, 0.80, 0.84))
    if kind == "pixel":
        PixelImage(ax, data)
    else:
        ax.imshow(data, interpolation="none")
    if limits is not None:
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
    fig.canvas.draw()
    fig.canvas.draw()  # a second draw: the lookup, where it was kept
    return np.asarray(fig.canvas.get_renderer().buffer_rgba()).copy()


@pytest.mark.parametrize("shape", [(224, 224), (200, 300), (320, 240), (97, 131)])
def test_pixel_image_draws_the_pixels_matplotlib_draws(shape: tuple[int, int]) -> None:
    data = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_drawn(data, "pixel"), _drawn(data, "imshow"))
    zoomed = ((10.5, shape[1] / 2), (shape[0] / 2, 5.5))
    np.testing.assert_array_equal(_drawn(data, "pixel", zoomed), _drawn(data, "imshow", zoomed))


def test_pixel_image_keeps_its_lookup_for_the_explorers_maps(explorer: Explorer) -> None:
    art = explorer.views.overlay.art
    assert isinstance(art, PixelImage) and art._table[1], "the 224 x 224 overlay uses the lookup"
    explorer.opacity.value = 0.8  # the image changes; its pixels are still matplotlib's
    figure = explorer.views.figures["overlay"]
    figure.canvas.draw()
    fast = np.asarray(figure.canvas.get_renderer().buffer_rgba()).copy()
    art._table = ((), False, None, None, None)
    art.draw = lambda renderer: PixelImage.__mro__[1].draw(art, renderer)  # matplotlib's
    figure.canvas.draw()
    np.testing.assert_array_equal(fast, np.asarray(figure.canvas.get_renderer().buffer_rgba()))
