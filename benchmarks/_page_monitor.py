"""The browser benchmark's in-page monitor and the kernel-side profile it can install.

The page gets a monitor (event stamps, per-canvas pixel-change stamps, draw-call stamps);
:class:`Page` reads it. See benchmarks/explorer_browser.py.
"""

from __future__ import annotations

import statistics

VIEWS = ("overlay", "grid", "probe", "lpw", "curves")
# Seconds: one interaction's wait for a change; no pixel change for this long: settled.
CHANGE_S, QUIET_S = 5.0, 0.6

# The in-page monitor: event stamps, per-canvas pixel-change stamps and draw-call stamps.
MONITOR_JS = r"""
(views) => {
  if (window.__hwb) return;
  const H = window.__hwb = {events: [], changes: {}, draws: {}, hashes: {}, canvases: {},
                            dirty: new Set(), frames: 0, hashMs: 0, hashes_n: 0, unflagged: 0};
  const nameOf = new WeakMap();
  for (const v of views) { H.changes[v] = []; H.draws[v] = []; }
  // the page is searched for a view's canvas only while it has none in the document (a
  // query per view and frame cost the page more main-thread time than any hash)
  const canvasOf = (v) => {
    const c = H.canvases[v];
    if (c && c.isConnected) return c;
    return document.querySelector(`.holiwidget-view-${v} canvas`);
  };
  function hash(c) {
    const w = c.width, h = c.height;
    if (!w || !h) return 0;
    const t = performance.now();
    const d = new Uint32Array(c.getContext("2d").getImageData(0, 0, w, h).data.buffer);
    let a = 0x811c9dc5 | 0;
    for (let i = 0; i < d.length; i++) a = Math.imul(a ^ d[i], 16777619);
    H.hashMs += performance.now() - t; H.hashes_n++;
    return ((a ^ Math.imul(w, 65599) ^ h) >>> 0);
  }
  H.hash = hash;
  const proto = CanvasRenderingContext2D.prototype;
  for (const m of ["drawImage", "putImageData", "clearRect", "fillRect"]) {
    const orig = proto[m];
    proto[m] = function (...args) {
      const v = nameOf.get(this.canvas);
      if (v !== undefined) {
        H.dirty.add(v);
        if (m === "drawImage") H.draws[v].push(performance.now());
        schedule();
      }
      return orig.apply(this, args);
    };
  }
  // any PNG data URL the page makes of a canvas (ipympl's front end made one per frame)
  H.toDataURL = {n: 0, ms: 0};
  const toDataURL = HTMLCanvasElement.prototype.toDataURL;
  HTMLCanvasElement.prototype.toDataURL = function (...args) {
    const t = performance.now();
    try { return toDataURL.apply(this, args); }
    finally { H.toDataURL.n++; H.toDataURL.ms += performance.now() - t; }
  };
  document.addEventListener("keydown",
    (e) => H.events.push({type: "key", key: e.key, t: performance.now()}), true);
  document.addEventListener("mousedown",
    (e) => H.events.push({type: "mouse", t: performance.now()}), true);
  // Frames are asked for only when a view was drawn, and 5 times a second for the safety
  // net (a requestAnimationFrame loop would make the page render 60 frames a second, which
  // a page at rest does not: it cost this 2-CPU machine a fifth of a CPU).
  let asked = false, sweep = 0;
  function schedule() {
    if (!asked) { asked = true; requestAnimationFrame(frame); }
  }
  setInterval(() => { sweep++; schedule(); }, 200);
  function frame() {
    asked = false;
    H.frames++;
    const now = performance.now();
    const turn = sweep > 0 ? views[H.frames % views.length] : null;
    sweep = 0;
    for (const v of views) {
      const c = canvasOf(v);
      if (!c) continue;
      if (H.canvases[v] !== c) {  // a (new) canvas: its pixels now are the reference
        H.canvases[v] = c; nameOf.set(c, v); H.hashes[v] = hash(c); H.dirty.delete(v);
        continue;
      }
      const flagged = H.dirty.has(v);
      // the safety net: one view (in turn) 5 times a second, each about once a second
      if (!flagged && v !== turn) continue;
      H.dirty.delete(v);
      const h = hash(c);
      if (h !== H.hashes[v]) {
        H.hashes[v] = h;
        H.changes[v].push({t: now, h: h, flagged: flagged});
        if (!flagged) H.unflagged++;
      }
    }
  }
  schedule();
}
"""

# Resolves once every view in `need` changed after `since` (or `timeout` passed) and no
# view in `views` changed for `quiet` ms (and at least `min_wait` ms passed since `since`).
WAIT_JS = r"""
async ({views, need, since, quiet, timeout, min_wait}) => {
  const H = window.__hwb;
  const changedAfter = (v) => H.changes[v].some((c) => c.t > since);
  while (true) {
    await new Promise((r) => setTimeout(r, 25));
    const now = performance.now();
    let last = since;
    for (const v of views) {
      const c = H.changes[v];
      if (c.length && c[c.length - 1].t > last) last = c[c.length - 1].t;
    }
    const needed = need.every(changedAfter);
    const timedOut = now - since > timeout;
    if ((needed || timedOut) && now - last >= quiet && now - since >= min_wait)
      return {now, last, needed};
    if (now - since > timeout + 10000) return {now, last, needed};
  }
}
"""

# Bounding boxes (canvas pixels) of the grid's map panels: runs of rows and columns that are
# mostly non-white (the maps fill their panels with colour), at least 20 px long.
PANELS_JS = r"""
() => {
  const c = window.__hwb.canvases.grid;
  const w = c.width, h = c.height;
  const d = c.getContext("2d").getImageData(0, 0, w, h).data;
  const cols = new Array(w).fill(0), rows = new Array(h).fill(0);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const i = 4 * (y * w + x);
    if (d[i + 3] > 0 && (d[i] < 230 || d[i + 1] < 230 || d[i + 2] < 230)) { cols[x]++; rows[y]++; }
  }
  const runs = (counts, limit) => {
    const out = []; let start = -1;
    for (let i = 0; i <= counts.length; i++) {
      const on = i < counts.length && counts[i] > limit;
      if (on && start < 0) start = i;
      if (!on && start >= 0) { if (i - start >= 20) out.push([start, i]); start = -1; }
    }
    return out;
  };
  return {width: w, height: h, css: [c.clientWidth, c.clientHeight],
          xs: runs(cols, 0.25 * h), ys: runs(rows, 0.25 * w)};
}
"""

# Kernel side, --profile only: counters per figure and per widget message.
PROFILE_CODE = r"""
def _hwb_install():
    import collections, time
    from holiwidget.explorer.surface import SurfaceCanvas as Canvas
    if getattr(Canvas, "_hwb", None) is not None:
        return
    import holiwidget.explorer.surface as surface
    stats = Canvas._hwb = collections.defaultdict(collections.Counter)
    sent = []  # the PNG bytes of the frames built in the current _send
    build = surface.frame_message

    def counted(shown, rgba):
        out = build(shown, rgba)
        if out is not None:
            sent.append(len(out[1][0]))
        return out

    surface.frame_message = counted

    def wrap(cls, name, key, label):
        orig = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            t = time.perf_counter()
            sent.clear()
            try:
                out = orig(self, *args, **kwargs)
            finally:
                s = stats[label(self, *args)]
                s[key + "_n"] += 1
                s[key + "_ms"] += (time.perf_counter() - t) * 1e3
            if key == "frame":
                s["png_kb"] += sum(sent) / 1024
                s["unchanged_n"] += not sent
            return out

        setattr(cls, name, wrapper)

    fig = lambda self, *a: "figure " + self.figure.get_label()
    wrap(Canvas, "draw", "draw_total", fig)  # whole Agg render + PNG + send
    wrap(Canvas, "_send", "frame", fig)  # every frame: what changed, as a PNG, sent
    wrap(Canvas, "_mouse", "mouse", fig)  # the page's mouse events, as matplotlib's

    def msg(self, m, *a):
        data = m.get("content", {}).get("data", {})
        kind = data.get("method", "?")
        if kind == "update":
            kind += ":" + ",".join(sorted(data.get("state", {})))
        elif kind == "custom":
            kind += ":" + str(data.get("content", {}).get("type", "?"))
        return "msg " + type(self).__name__ + " " + kind

    # a widget's comm holds its bound _handle_msg: wrap each open one's callback
    from ipywidgets.widgets.widget import _instances

    for w in list(_instances.values()):
        callback = getattr(getattr(w, "comm", None), "_msg_callback", None)
        if callback is None:
            continue

        def handled(m, _cb=callback, _w=w):
            t = time.perf_counter()
            try:
                return _cb(m)
            finally:
                s = stats[msg(_w, m)]
                s["handled_n"] += 1
                s["handled_ms"] += (time.perf_counter() - t) * 1e3

        w.comm.on_msg(handled)


_hwb_install()
"""
PROFILE_READ = (
    "__import__('json').dumps({k: dict(v) for k, v in "
    "__import__('holiwidget.explorer.surface', fromlist=['SurfaceCanvas'])"
    ".SurfaceCanvas._hwb.items()})"
)
INFO_EXPR = r"""__import__('json').dumps(dict(
    holiwidget=__import__('holiwidget').__file__,
    torch_threads=__import__('torch').get_num_threads(),
    torch=__import__('torch').__version__,
    anywidget=__import__('anywidget').__version__,
    matplotlib=__import__('matplotlib').__version__,
    layers=[str(v) for v in explorer.dataset['layer'].values] if 'explorer' in globals() else None,
    methods=[str(v) for v in explorer.dataset['cam'].values] if 'explorer' in globals() else None,
    size=[int(explorer.dataset.sizes['y']), int(explorer.dataset.sizes['x'])]
         if 'explorer' in globals() else None,
))"""


def summary(values: list[float], target: float | None = None, missed: int = 0) -> dict:
    """n, median, p90, max (ms); against ``target``: met when nothing was missed and the
    median is within it."""
    ms = sorted(values)
    out: dict = {"n": len(ms), "missed": missed}
    if ms:
        out.update(
            median_ms=round(statistics.median(ms), 1),
            p90_ms=round(ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))], 1),
            max_ms=round(ms[-1], 1),
        )
    if target is not None:
        out["target_ms"] = target
        out["met"] = bool(ms) and missed == 0 and statistics.median(ms) <= target
    return out


class Page:
    """The notebook page with the monitor installed."""

    def __init__(self, page) -> None:
        self.page = page

    def now(self) -> float:
        return self.page.evaluate("performance.now()")

    def n_events(self) -> int:
        return self.page.evaluate("window.__hwb.events.length")

    def events_since(self, index: int) -> list[dict]:
        return self.page.evaluate(f"window.__hwb.events.slice({index})")

    def wait(self, since: float, need=(), quiet=QUIET_S, timeout=CHANGE_S, min_wait=0.0) -> dict:
        return self.page.evaluate(
            WAIT_JS,
            {
                "views": list(VIEWS),
                "need": list(need),
                "since": since,
                "quiet": quiet * 1e3,
                "timeout": timeout * 1e3,
                "min_wait": min_wait * 1e3,
            },
        )

    def changes(self, since: float) -> dict[str, list[dict]]:
        return self.page.evaluate(
            "(since) => Object.fromEntries(Object.entries(window.__hwb.changes)"
            ".map(([v, cs]) => [v, cs.filter((c) => c.t > since)]))",
            since,
        )

    def draws(self, since: float) -> dict[str, int]:
        return self.page.evaluate(
            "(since) => Object.fromEntries(Object.entries(window.__hwb.draws)"
            ".map(([v, ts]) => [v, ts.filter((t) => t > since).length]))",
            since,
        )

    def hashes(self) -> dict[str, int]:
        return self.page.evaluate("({...window.__hwb.hashes})")
