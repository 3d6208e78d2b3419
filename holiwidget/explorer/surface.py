"""A figure's canvas in the page: an Agg canvas whose frames go to a small widget of our own.

:class:`SurfaceCanvas` renders with Agg and sends each frame to its :class:`Surface`, an
anywidget whose front end (``surface.js``) decodes it off the page's main thread and draws
it at once. A frame is a PNG (:func:`quick_png`) of the box of pixels that changed since the
last frame (:func:`changed_box`): after a slider move, the grid's frame is its Holistic-CAM
column, a fifth of the figure. The page's mouse presses, drags, releases and wheel turns
come back as matplotlib events, so ``mpl_connect`` callbacks work as on any canvas.

Why not ipympl's canvas: for every frame it receives, ipympl's front end re-encodes its
whole offscreen canvas as a PNG data URL (``toDataURL``, 8 to 17 ms of the page's main
thread per frame here) and loads the frame through a blob URL before it draws; on a small
machine that was a large part of the time from a slider move to the new map on screen.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from pathlib import Path

import anywidget
import numpy as np
import traitlets
from isal import isal_zlib
from matplotlib.backend_bases import MouseEvent
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["WHOLE_SHARE", "Surface", "SurfaceCanvas", "changed_box", "frame_message", "quick_png"]

log = logging.getLogger(__name__)

#: The page's names for the mouse events, and matplotlib's.
_EVENTS = {
    "press": "button_press_event",
    "release": "button_release_event",
    "move": "motion_notify_event",
    "scroll": "scroll_event",
}
#: A frame whose changed box covers more than this share of the figure is sent whole (the
#: page may then skip the frames before it that it has not drawn yet).
WHOLE_SHARE = 0.5


class Surface(anywidget.AnyWidget):
    """The widget a :class:`SurfaceCanvas` draws on: a ``width`` x ``height`` pixel canvas.

    Frames arrive as custom messages ``{"type": "frame", "x": ..., "y": ..., "whole": ...}``
    with one PNG buffer, drawn with its top left corner at pixel (x, y); a ``whole`` frame
    is the whole canvas and makes any frame before it moot. The page answers
    ``{"type": "ready"}`` when a view of it is shown (it gets a whole frame), and sends the
    mouse's events (``press``; ``move`` while pressed and ``release`` if :attr:`drag`;
    ``scroll`` if :attr:`wheel`) with ``x``, ``y`` in pixels from the top left, ``button``
    (1 left, 2 middle, 3 right), ``shift``, ``dblclick`` (press) and ``step`` (scroll).
    """

    _esm = Path(__file__).with_name("surface.js")
    # each canvas a layer of its own: a new frame does not repaint the page around it
    _css = (
        ".holiwidget-surface { line-height: 0; }"
        " .holiwidget-surface canvas { display: block; will-change: transform; }"
    )
    width = traitlets.Int(100).tag(sync=True)
    height = traitlets.Int(100).tag(sync=True)
    #: Whether the wheel over the canvas is sent (and so does not scroll the page), and
    #: whether a press is followed by its moves and its release (for a drag).
    wheel = traitlets.Bool(False).tag(sync=True)
    drag = traitlets.Bool(False).tag(sync=True)
    #: The CSS cursor over the canvas, and its tooltip.
    cursor = traitlets.Unicode("default").tag(sync=True)
    hint = traitlets.Unicode("").tag(sync=True)


class SurfaceCanvas(FigureCanvasAgg):
    """An Agg canvas that sends every frame to its :attr:`widget` (a :class:`Surface`).

    ``draw()`` renders the figure and sends it; ``blit()`` sends the frame as it stands
    (after a redraw of some artists over a kept background). Either sends only the box of
    pixels that changed since the last frame, or nothing if none did. The widget's mouse
    events are processed as matplotlib events, through :attr:`dispatch` when it is set (a
    callable ``dispatch(fn, *args)`` that runs ``fn`` where the figure may change, e.g. on
    the kernel's event loop; the page's messages arrive on another thread).

    Args:
        figure: the figure (its size fixes the canvas's).
        zoom: take the mouse wheel over the canvas and send drags (for a zoom and a pan).
        cursor, hint: the CSS cursor over the canvas and its tooltip.
    """

    def __init__(
        self, figure: Figure, *, zoom: bool = False, cursor: str = "default", hint: str = ""
    ) -> None:
        super().__init__(figure)
        width, height = self.get_width_height()
        self.widget = Surface(
            width=width, height=height, wheel=zoom, drag=zoom, cursor=cursor, hint=hint
        )
        self.widget.layout.overflow = "hidden"
        self.widget.layout.flex = "0 0 auto"
        self.dispatch: Callable[..., None] | None = None
        self._shown: np.ndarray | None = None  # the pixels of the frames sent so far
        self._idle_pending = False
        self.widget.on_msg(self._received)

    def draw(self) -> None:
        """Render the whole figure and send it."""
        super().draw()
        self._send()

    def draw_idle(self, *args: object, **kwargs: object) -> None:
        """Draw and send once, soon, on the running event loop (in a kernel). Without a
        loop there is no page to send to: nothing is drawn until asked."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if not self._idle_pending:
            self._idle_pending = True
            loop.call_soon(self._draw_when_idle)

    def _draw_when_idle(self) -> None:
        self._idle_pending = False
        self.draw()

    def blit(self, bbox: object = None) -> None:
        """Send the frame as it stands (what changed of it: the ``bbox`` is not needed)."""
        self._send()

    def _send(self) -> None:
        rgba = np.asarray(self.get_renderer().buffer_rgba())
        height, width = rgba.shape[:2]
        if (self.widget.width, self.widget.height) != (width, height):  # the figure resized
            with self.widget.hold_sync():
                self.widget.width, self.widget.height = width, height
        message = frame_message(self._shown, rgba)
        if message is not None:  # (else the page shows these pixels already)
            self._shown = rgba.copy()
            self.widget.send(*message)

    def _push(self) -> None:
        """Send the whole of the last frame."""
        if self._shown is not None:
            self.widget.send(*frame_message(None, self._shown))

    def _received(self, _widget: object, content: dict, _buffers: list) -> None:
        kind = content.get("type")
        if kind == "ready":  # a view was shown: it gets the whole of the last frame
            action, args = self._push, ()
        elif kind in _EVENTS:
            action, args = self._mouse, (kind, content)
        else:
            log.debug("surface: unknown message %r", kind)
            return
        # (where the frames are sent from: a whole frame sent from here while a newer
        # frame's changes are sent from there could reach the page after them)
        if self.dispatch is None:
            action(*args)
        else:
            self.dispatch(action, *args)

    def _mouse(self, kind: str, content: dict) -> None:
        try:
            x = float(content["x"])
            y = self.figure.bbox.height - float(content["y"])  # matplotlib: from the bottom
            step = float(content.get("step", 0))
        except (KeyError, TypeError, ValueError):
            log.debug("surface: a %s without a position or step", kind)
            return
        MouseEvent(
            _EVENTS[kind],
            self,
            x,
            y,
            button=("up" if step > 0 else "down") if kind == "scroll" else content.get("button"),
            key="shift" if content.get("shift") else None,
            step=step,
            dblclick=bool(content.get("dblclick", False)),
        )._process()


def changed_box(before: np.ndarray, after: np.ndarray) -> tuple[slice, slice] | None:
    """The rows and columns of the smallest box holding every pixel that differs between
    two (H, W, 4) uint8 images of one size, or None if they are equal."""
    if before.shape != after.shape or before.ndim != 3 or before.shape[2] != 4:
        raise ValueError(
            "changed_box takes two (H, W, 4) images of one size, "
            f"not {before.shape} and {after.shape}"
        )
    differs = _pixels(before) != _pixels(after)
    rows, cols = np.flatnonzero(differs.any(axis=1)), np.flatnonzero(differs.any(axis=0))
    if rows.size == 0:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def frame_message(shown: np.ndarray | None, rgba: np.ndarray) -> tuple[dict, list[bytes]] | None:
    """The custom message (content, buffers) that takes the page from the (H, W, 4) pixels
    ``shown`` (None: nothing known, or another size) to ``rgba``: a PNG of the box that
    changed, drawn at its top left corner (x, y), or the whole image when there is no
    ``shown`` of that size or the box covers more than :data:`WHOLE_SHARE` of it; None when
    no pixel changed."""
    height, width = rgba.shape[:2]
    rows, cols = slice(0, height), slice(0, width)
    if shown is not None and shown.shape == rgba.shape:
        box = changed_box(shown, rgba)
        if box is None:
            return None
        box_height, box_width = (box[0].stop - box[0].start), (box[1].stop - box[1].start)
        if box_height * box_width <= WHOLE_SHARE * height * width:
            rows, cols = box
    whole = (rows.stop - rows.start, cols.stop - cols.start) == (height, width)
    content = {"type": "frame", "x": cols.start, "y": rows.start, "whole": whole}
    return content, [quick_png(rgba[rows, cols])]


def _pixels(rgba: np.ndarray) -> np.ndarray:
    """(H, W) uint32: one number per RGBA pixel (a quicker comparison than per channel)."""
    return np.ascontiguousarray(rgba, dtype=np.uint8).view(np.uint32)[..., 0]


def quick_png(rgba: np.ndarray) -> bytes:
    """An (H, W, 4) uint8 image as a PNG: no row filter, deflated by ISA-L (``isal``) at
    level 2.

    Pillow offers no choice of row filter, and its adaptive filtering alone takes about as
    long as the compression; rendered figures (flat backgrounds, smooth maps) compress about
    as well without it. ISA-L deflates a frame about five times as quickly as zlib at level
    1, to about the same size. Any PNG reader decodes the result (tested against Pillow).
    """
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"quick_png takes (H, W, 4) RGBA pixels, not an array of {rgba.shape}")
    height, width = rgba.shape[:2]
    rows = np.zeros((height, width * 4 + 1), np.uint8)  # a 0 (no filter) before each row
    rows[:, 1:] = np.ascontiguousarray(rgba, dtype=np.uint8).reshape(height, -1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = isal_zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", isal_zlib.compress(rows.tobytes(), 2)),
            chunk(b"IEND", b""),
        )
    )
