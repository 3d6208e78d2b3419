"""When the explorer's frames are sent: at once, a moment later, or once the changes rest.

In a kernel, the page's messages arrive on a thread of their own (a kernel subshell) while
the views are drawn on the kernel's event loop. :class:`Pacer` runs the page's actions on
that loop (so that the session changes on one thread, and the drawing does not compete with
it for the interpreter); a page's message is done (and the kernel says it is idle again)
once its action has run there, for at most :data:`HOLD_S`, so that the first frames it sends
reach the page before the kernel's "idle", which JupyterLab answers with work of its own
(its busy indicators). The frames are sent from the loop in three waves:

- *first*: the views an interaction is judged by (after a slider move the overlay and the
  grid, after a click the overlay and the probe), at once, in :data:`ORDER`;
- *next*: after a click the grid, :data:`NEXT_S` later, with the page's text readouts, when
  the browser has had the time to draw the first ones;
- *later*: the rest (the low-pass wrap, the curves, the sweep) once the changes pause for
  :data:`SETTLE_S`, so that a burst of slider moves draws them once.

Without a kernel's loop (a script, a test), frames are left to ``draw_idle`` and the
readouts run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable

__all__ = ["HOLD_S", "NEXT_S", "ORDER", "SETTLE_S", "Pacer"]

#: The order frames are sent in: those with speed targets first, the slow ones last.
ORDER = ("overlay", "probe", "grid", "lpw", "sensitivity", "curves")
#: Seconds from the first wave to the next, and of rest before the later one.
NEXT_S, SETTLE_S = 0.08, 0.12
#: The most seconds a page's message waits for its action to run on the loop.
HOLD_S = 0.5


class Pacer:
    """The views' pending frames and the kernel's loop they are sent from.

    Args:
        paint: ``paint(view, whole)`` draws a view and sends its frame: the whole figure
            (``whole``) or only its moving parts.
        idle: ``idle(view)`` asks for a draw when the browser is next idle (no loop).
        interactive: whether the views have canvases in a browser at all.
    """

    def __init__(
        self,
        paint: Callable[[str, bool], None],
        idle: Callable[[str], None],
        *,
        interactive: bool,
    ) -> None:
        self._paint, self._idle, self.interactive = paint, idle, interactive
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._dirty: dict[str, bool] = {}  # view -> whole figure (True) or moving parts
        self._first: set[str] = set()
        self._next: set[str] = set()
        self._pending = False
        self._after: list[Callable[[], None]] = []
        self._soon: dict[str, bool] = {}
        self._soon_after: list[Callable[[], None]] = []
        self._soon_timer: asyncio.TimerHandle | None = None
        self._later: dict[str, bool] = {}
        self._resting: list[Callable[[], None]] = []
        self._settle: asyncio.TimerHandle | None = None
        self._queued: dict[str, tuple[Callable, tuple, list[threading.Event]]] = {}
        self._queue_lock = threading.Lock()

    # -- the loop ------------------------------------------------------------------------

    def attach(self) -> None:
        """Send frames from the running event loop (call it in the kernel's thread)."""
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
            self._thread = threading.get_ident()

    def elsewhere(self) -> bool:
        """Whether this runs off the loop's thread (the views must change on the loop)."""
        return self._loop is not None and threading.get_ident() != self._thread

    def on_loop(self, fn: Callable, *args: object, latest: str | None = None) -> threading.Event:
        """Run ``fn(*args)`` on the loop's thread. ``latest``: calls of that name still
        waiting are replaced by this one (only the newest of a burst of slider moves runs).
        Returns an event set once it has run (or was replaced by a call that has run)."""
        done = threading.Event()
        if latest is None:
            self._loop.call_soon_threadsafe(self._run_then, [done], fn, *args)
            return done
        with self._queue_lock:
            waiting = latest in self._queued
            replaced = self._queued[latest][2] if waiting else []
            self._queued[latest] = (fn, args, [*replaced, done])
        if not waiting:
            self._loop.call_soon_threadsafe(self._run_latest, latest)
        return done

    def run(self, fn: Callable, *args: object, latest: str | None = None) -> None:
        """Run ``fn(*args)`` on the loop's thread: at once when this is it (or there is no
        loop), else as :meth:`on_loop` does, returning once it has run (at most
        :data:`HOLD_S` later)."""
        if self.elsewhere():
            self.on_loop(fn, *args, latest=latest).wait(HOLD_S)
        else:
            fn(*args)

    def _run_latest(self, name: str) -> None:
        with self._queue_lock:
            fn, args, done = self._queued.pop(name)
        self._run_then(done, fn, *args)

    @staticmethod
    def _run_then(done: list[threading.Event], fn: Callable, *args: object) -> None:
        try:
            fn(*args)
        finally:
            for event in done:
                event.set()

    # -- frames --------------------------------------------------------------------------

    def mark(self, view: str, whole: bool = False) -> None:
        """``view`` changed: its moving parts, or the ``whole`` figure."""
        self._dirty[view] = self._dirty.get(view, False) or whole

    def send_now(self, view: str) -> None:
        """Send ``view``'s frame at once if it changed (in a kernel; else at the next draw)."""
        if view in self._dirty and self._loop is not None and self.interactive:
            self._paint(view, self._dirty.pop(view))

    def draw(self, first: Iterable[str] = (), following: Iterable[str] = ()) -> None:
        """Send the changed views' frames: ``first`` at once, ``following`` a moment later,
        the others once the changes rest (in a kernel; else when the browser is idle)."""
        self._first |= set(first)
        self._next |= set(following)
        if not self.interactive:
            self._dirty.clear()  # Agg figures are drawn when saved
        elif self._loop is None:
            for view in self._dirty:
                self._idle(view)
            self._dirty.clear()
        else:
            self._schedule()

    def then(self, fn: Callable[[], None], *, resting: bool = False) -> None:
        """Run ``fn`` once the changed views are drawn (at once without a kernel's loop): the
        page's text readouts follow the frames, so that the maps reach the browser first.
        ``resting``: only once the changes pause (the readouts of a burst of slider moves)."""
        if self._loop is None or not self.interactive:
            fn()
            return
        if resting:
            self._resting = [fn]  # it reads the state then: the last one is enough
        else:
            self._after.append(fn)
        self._schedule()

    def _schedule(self) -> None:
        if not self._pending:
            self._pending = True
            self._loop.call_soon_threadsafe(self._render)

    def _render(self) -> None:
        self._pending = False
        dirty, self._dirty = self._dirty, {}
        first, self._first = self._first, set()
        following, self._next = self._next, set()
        after, self._after = self._after, []
        for view in ORDER:
            if view not in dirty:
                continue
            whole = dirty[view] or self._later.pop(view, False)
            if view in first:
                self._paint(view, whole or self._soon.pop(view, False))
            elif view in following:
                self._soon[view] = self._soon.get(view, False) or whole
            else:
                self._later[view] = whole
        if self._later or self._resting:
            if self._settle is not None:
                self._settle.cancel()
            self._settle = self._loop.call_later(SETTLE_S, self._render_later)
        if self._soon:  # the readouts follow the last frames
            self._soon_after += after
            if self._soon_timer is None:
                self._soon_timer = self._loop.call_later(NEXT_S, self._render_soon)
            return
        for fn in after:
            fn()

    def _render_soon(self) -> None:
        self._soon_timer = None
        soon, self._soon = self._soon, {}
        after, self._soon_after = self._soon_after, []
        self._send(soon, after)

    def _render_later(self) -> None:
        self._settle = None
        later, self._later = self._later, {}
        resting, self._resting = self._resting, []
        self._send(later, resting)

    def _send(self, views: dict[str, bool], then: list[Callable[[], None]]) -> None:
        for view in ORDER:
            if view in views:
                self._paint(view, views[view])
        for fn in then:
            fn()
