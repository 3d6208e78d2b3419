"""The explorer in a real browser: JupyterLab, Debian's chromium driven by Playwright.

The test starts `holiwidget lab` (JupyterLab on a working copy of notebooks/explorer.ipynb in
a temporary folder) on a free loopback port with a random token, runs the notebook
(MobileNetV2 with the shared weights, read from HOLIWIDGET_WEIGHTS), moves the threshold
slider with the keyboard and checks that the fused view's pixels change and that the page's
canvases hold the kernel's frames pixel for pixel, clicks a pixel and
checks that the probe changes, opens a sweep's results in the sensitivity view, checks that
no view moved on the page meanwhile, switches JupyterLab to its dark theme and checks that
the status line stays legible, then terminates `holiwidget lab` and checks that nothing is
left running. Screenshots go to test-artifacts/ (first render, after the slider move, after
the probe click, with the sensitivity view, in the dark theme). A second test runs the
notebook in Notebook 7, in a page without WebCodecs' ImageDecoder (the canvases' other way
to decode a frame), and checks that a slider drag changes the overlay and the grid.

Without chromium the test is skipped, except in CI (``CI`` set), where it fails: .ci/run
installs chromium when it is missing, and a browser that cannot start is a failure.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat
from test_lab import Lab

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "explorer.ipynb"
ARTIFACTS = Path(os.environ.get("HOLIWIDGET_TEST_ARTIFACTS", REPO / "test-artifacts")) / "explorer"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Seconds: JupyterLab start, the first maps (a kernel, torch, eight network passes), a redraw.
SERVER_S, FIRST_MAPS_S, REDRAW_S = 60, 150, 30

OVERLAY = ".holiwidget-view-overlay canvas"
PROBE_CANVAS = ".holiwidget-view-probe canvas"
STATUS = ".holiwidget-status"
PROBE = ".holiwidget-probe"
SWEEP_CANVAS = ".holiwidget-view-sensitivity canvas"
GRID_CANVAS = ".holiwidget-view-grid canvas"
CURVES_CANVAS = ".holiwidget-view-curves canvas"
SWEEP = REPO / "docs" / "results" / "sweep-mobilenet_v2-imagenet-val66.nc"
VIEWS = ("overlay", "lpw", "probe", "curves", "grid", "sensitivity")


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        message = "chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return exe


@pytest.fixture
def lab(tmp_path: Path, mobilenet_weights: Path) -> Iterator[Lab]:
    """The README's main job, `holiwidget lab`, on a working copy of the explorer notebook in
    tmp_path (on a free port, with a known token).

    Teardown terminates `holiwidget lab` (SIGTERM, as a user's ``kill`` or service manager
    would) and checks that it stopped JupyterLab and its kernel: no process is left, and
    the checkout's notebooks/ is as it was (no autosave, no checkpoints there).
    """
    before = {p.name: p.read_bytes() for p in NOTEBOOK.parent.iterdir() if p.is_file()}
    folders = sorted(p.name for p in NOTEBOOK.parent.iterdir())
    workdir = tmp_path / "lab"
    with Lab(tmp_path, "--workdir", workdir, "--weights", mobilenet_weights) as server:
        yield server
        status, alive = server.stop()
    assert alive == [], f"left running after SIGTERM to holiwidget lab: {alive}"
    assert status == 0, server.log()[-2000:]
    assert (workdir / "notebooks" / "explorer.ipynb").is_file()
    assert sorted(p.name for p in NOTEBOOK.parent.iterdir()) == folders
    assert {p.name: p.read_bytes() for p in NOTEBOOK.parent.iterdir() if p.is_file()} == before


def _shot(page, selector: str) -> Image.Image:
    loc = page.locator(selector).first
    loc.scroll_into_view_if_needed()
    return Image.open(io.BytesIO(loc.screenshot())).convert("RGB")


def _places(page) -> dict[str, tuple]:
    """Each view's box relative to the overlay's (scrolling and the page's width aside)."""
    return page.evaluate(
        """() => {
        const app = document.querySelector('.holiwidget-view-overlay').getBoundingClientRect();
        const out = {};
        for (const el of document.querySelectorAll('[class*="holiwidget-view-"]')) {
            const name = [...el.classList].find(c => c.startsWith('holiwidget-view-')).slice(16);
            const r = el.getBoundingClientRect();
            out[name] = [r.x - app.x, r.y - app.y, r.width, r.height].map(Math.round);
        }
        return out;
    }"""
    )


def _shown_whole(page, selector: str) -> bool:
    """Whether the canvas's left and right edges are visible (on top) once it is scrolled
    into view with its left edge first: nothing clips or covers its sides."""
    return page.evaluate(
        """(selector) => {
        const canvas = document.querySelector(selector);
        canvas.scrollIntoView({block: 'center', inline: 'start'});
        const r = canvas.getBoundingClientRect(), y = r.top + r.height / 2;
        return [r.left + 2, r.right - 2].every(x => document.elementFromPoint(x, y) === canvas);
    }""",
        selector,
    )


def _contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two CSS ``rgb(...)`` colours (4.5 and above: legible text)."""

    def luminance(css: str) -> float:
        values = [int(float(v)) / 255 for v in css[css.index("(") + 1 : css.index(")")].split(",")]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in values[:3]]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _changed(before: Image.Image, after: Image.Image) -> float:
    """Mean absolute pixel difference over the area both screenshots cover."""
    box = (0, 0, min(before.width, after.width), min(before.height, after.height))
    diff = ImageChops.difference(before.crop(box), after.crop(box))
    return sum(ImageStat.Stat(diff).mean) / 3


def _settled(page, selector: str) -> Image.Image:
    """A view's screenshot once it is drawn (not blank) and no longer changing."""
    deadline = time.monotonic() + REDRAW_S
    previous = None
    while True:
        shot = _shot(page, selector)
        drawn = max(ImageStat.Stat(shot).stddev) > 10
        if drawn and previous is not None and _changed(previous, shot) == 0:
            return shot
        if time.monotonic() > deadline:
            pytest.fail(f"{selector} was not drawn within {REDRAW_S} s")
        previous = shot
        time.sleep(0.5)


def _wait_changed(page, selector: str, before: Image.Image) -> tuple[Image.Image, float]:
    deadline = time.monotonic() + REDRAW_S
    while True:
        after = _shot(page, selector)
        diff = _changed(before, after)
        if diff > 0.5 or time.monotonic() > deadline:
            return after, diff
        time.sleep(0.3)


def _same_pixels_as_the_kernel(page, lab: Lab, view: str) -> None:
    """Wait until a view's canvas in the page holds the pixels of the kernel's last frame of
    it (the page draws each frame, a box of changed pixels, over the ones before it)."""
    expression = (
        "__import__('json').dumps(__import__('hashlib').sha1(explorer.views.figures"
        f"[{view!r}].canvas._shown.tobytes()).hexdigest())"
    )
    script = """async (view) => {
        const c = document.querySelector(`.holiwidget-view-${view} canvas`);
        const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        const digest = await crypto.subtle.digest("SHA-1", data);
        return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    }"""
    deadline = time.monotonic() + REDRAW_S
    while page.evaluate(script, view) != lab.kernel_eval(expression):
        assert time.monotonic() < deadline, f"the page's {view} is not the kernel's frame"
        time.sleep(0.3)


def test_explorer_in_jupyterlab(lab: Lab) -> None:
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.goto(lab.url("lab/tree/notebooks/explorer.ipynb"))
            # The notebook's own cells are shown and its kernel has started.
            page.wait_for_selector(
                ".jp-NotebookPanel .jp-Cell:has-text('hw.open_explorer(')", timeout=SERVER_S * 1000
            )
            page.wait_for_selector(
                ".jp-StatusBar-TextItem:has-text('Idle')", timeout=SERVER_S * 1000
            )
            page.screenshot(path=str(ARTIFACTS / "1-notebook.png"))

            # Run every cell (JupyterLab's Run menu).
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            page.wait_for_function(
                "() => { const s = document.querySelector('.holiwidget-status');"
                " return s && /computed|error/.test(s.textContent); }",
                timeout=FIRST_MAPS_S * 1000,
            )
            status = page.locator(STATUS).first.text_content()
            assert "computed" in status and "Egyptian cat" in status, status
            before = _settled(page, OVERLAY)
            before.save(ARTIFACTS / "overlay-0.5.png")
            page.screenshot(path=str(ARTIFACTS / "2-explorer.png"))
            places = _places(page)
            assert set(places) == set(VIEWS), places

            # The threshold slider, by keyboard: 20 steps of 0.01 down from 0.5.
            handle = page.locator(".holiwidget-threshold .noUi-handle").first
            handle.scroll_into_view_if_needed()
            handle.focus()
            for _ in range(20):
                page.keyboard.press("ArrowLeft")
            page.wait_for_function(
                "() => document.querySelector('.holiwidget-status').textContent.includes('τ 0.30')",
                timeout=REDRAW_S * 1000,
            )
            status = page.locator(STATUS).first.text_content()
            assert "no network pass" in status, status
            _wait_changed(page, OVERLAY, before)
            after = _settled(page, OVERLAY)
            after.save(ARTIFACTS / "overlay-0.3.png")
            page.screenshot(path=str(ARTIFACTS / "3-threshold.png"))
            assert _changed(before, after) > 0.5, (
                "the fused view did not change after moving the threshold"
            )

            # After the burst the view shows its last state: one step right and back shows
            # the same pixels (no older frame drawn last).
            # (The status line follows the frames.)
            for key, tau in (("ArrowRight", "0.31"), ("ArrowLeft", "0.30")):
                page.keyboard.press(key)
                page.wait_for_function(
                    f"() => document.querySelector('.holiwidget-status').textContent"
                    f".includes('τ {tau}')",
                    timeout=REDRAW_S * 1000,
                )
            assert _changed(after, _settled(page, OVERLAY)) == 0, "the burst's last frame is stale"
            for view in ("overlay", "grid", "lpw"):
                _same_pixels_as_the_kernel(page, lab, view)

            # A click on a pixel of the fused view: the probe shows that pixel.
            probe_text = page.locator(PROBE).first.text_content()
            assert "click a pixel" in probe_text
            probe_before = _settled(page, PROBE_CANVAS)
            box = page.locator(OVERLAY).first.bounding_box()
            page.mouse.click(box["x"] + 0.45 * box["width"], box["y"] + 0.6 * box["height"])
            page.wait_for_function(
                "() => document.querySelector('.holiwidget-probe').textContent"
                ".includes('pixel (y')",
                timeout=REDRAW_S * 1000,
            )
            probe_text = page.locator(PROBE).first.text_content()
            assert "Holistic-CAM" in probe_text and "features.18" in probe_text, probe_text
            probe_after, probe_diff = _wait_changed(page, PROBE_CANVAS, probe_before)
            probe_after.save(ARTIFACTS / "probe.png")
            page.locator(PROBE).first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "4-probe.png"))
            assert probe_diff > 0.5, "the probe's plot did not change after the click"
            assert "error" not in page.locator(STATUS).first.text_content()
            _settled(page, GRID_CANVAS).save(ARTIFACTS / "grid.png")
            assert _shown_whole(page, GRID_CANVAS), "the grid is cut at the page's width"
            assert _places(page) == places, "a view moved when the probe appeared"

            # The overlay zooms with the wheel about the pointer, pans with a shift-drag
            # (without probing), and shows the whole image again when zoomed back out.
            whole = _settled(page, OVERLAY)
            box = page.locator(OVERLAY).first.bounding_box()
            x, y = box["x"] + 0.4 * box["width"], box["y"] + 0.5 * box["height"]
            page.mouse.move(x, y)
            page.mouse.wheel(0, -120)
            zoomed, diff = _wait_changed(page, OVERLAY, whole)
            assert diff > 0.5, "the overlay did not zoom"
            zoomed = _settled(page, OVERLAY)
            zoomed.save(ARTIFACTS / "overlay-zoomed.png")
            page.keyboard.down("Shift")
            page.mouse.down()
            page.mouse.move(x + 40, y, steps=4)
            page.mouse.up()
            page.keyboard.up("Shift")
            panned, diff = _wait_changed(page, OVERLAY, zoomed)
            panned.save(ARTIFACTS / "overlay-panned.png")
            assert diff > 0.5, "the overlay did not pan"
            assert page.locator(PROBE).first.text_content() == probe_text, "a pan probed"
            for _ in range(2):
                page.mouse.wheel(0, 120)
            _wait_changed(page, OVERLAY, _settled(page, OVERLAY))
            assert _changed(whole, _settled(page, OVERLAY)) == 0, "not the whole image again"

            # The curves of the current map (450 forward passes); nothing moves either.
            curves = _settled(page, CURVES_CANVAS)
            page.locator(".holiwidget-curves-button").click()
            page.wait_for_function(
                "() => document.querySelector('.holiwidget-status').textContent"
                ".includes('insertion AUC')",
                timeout=FIRST_MAPS_S * 1000,
            )
            _, diff = _wait_changed(page, CURVES_CANVAS, curves)
            assert diff > 0.5, "the curves view did not change"
            assert _places(page) == places, "a view moved when the curves appeared"

            # The sweep's heatmaps, marked at the current setting; nothing else moves.
            sweep = _shot(page, SWEEP_CANVAS)  # the placeholder text
            page.locator(".holiwidget-sweep-path input").fill(str(SWEEP))
            page.locator(".holiwidget-open-sweep").click()
            shown, diff = _wait_changed(page, SWEEP_CANVAS, sweep)
            assert diff > 0.5, "the sensitivity view did not show the sweep"
            page.locator(SWEEP_CANVAS).first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "5-sensitivity.png"))
            shown.save(ARTIFACTS / "sensitivity.png")
            assert "error" not in page.locator(STATUS).first.text_content()
            assert _places(page) == places, "a view moved when the sweep appeared"

            # JupyterLab's dark theme: the status line stays legible (light text).
            page.locator(".lm-MenuBar-itemLabel", has_text="Settings").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
            page.locator(".lm-Menu-itemLabel", has_text="JupyterLab Dark").first.click()
            page.wait_for_function(
                "() => document.body.dataset.jpThemeLight === 'false'", timeout=REDRAW_S * 1000
            )
            page.locator(STATUS).first.scroll_into_view_if_needed()
            time.sleep(1)
            page.screenshot(path=str(ARTIFACTS / "6-dark.png"))
            text, ground = page.evaluate(
                """() => {
                const span = document.querySelector('.holiwidget-status span');
                let el = span, bg = 'rgba(0, 0, 0, 0)';
                while (el && /rgba\\(0, 0, 0, 0\\)|transparent/.test(bg)) {
                    bg = getComputedStyle(el).backgroundColor; el = el.parentElement;
                }
                return [getComputedStyle(span).color, bg];
            }"""
            )
            ratio = _contrast(text, ground)
            assert ratio >= 4.5, f"status text {text} on {ground}: contrast {ratio:.1f} < 4.5"
        finally:
            browser.close()


class _Notebook7:
    """Jupyter Notebook 7 (``python -m notebook``) on a copy of the explorer notebook."""

    def __init__(self, folder: Path, weights: Path) -> None:
        from test_lab import _free_port, jupyter_env

        self.port, self.token = _free_port(), os.urandom(16).hex()
        work = folder / "nb7"
        work.mkdir()
        shutil.copyfile(NOTEBOOK, work / "explorer.ipynb")
        env = {**jupyter_env(folder), "HOLIWIDGET_WEIGHTS": str(weights)}
        self.log_path = folder / "notebook7.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "notebook", "--no-browser", "--ip=127.0.0.1"),
                    f"--port={self.port}",
                    f"--IdentityProvider.token={self.token}",
                    f"--ServerApp.root_dir={work}",
                    *(["--allow-root"] if os.geteuid() == 0 else []),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + SERVER_S
        while True:
            try:
                urllib.request.urlopen(self.url("api/status"), timeout=5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"Notebook 7 did not start:\n{self.log_path.read_text()[-2000:]}")
                time.sleep(0.5)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def stop(self) -> list:
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        _, alive = psutil.wait_procs(procs, timeout=60)
        for p in alive:
            p.kill()
        return alive


def test_explorer_in_notebook7(tmp_path: Path, mobilenet_weights: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = _Notebook7(tmp_path, mobilenet_weights)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1200})
                # As a browser without WebCodecs' ImageDecoder (Safari; any page served
                # neither over https nor from this machine): frames are decoded through
                # createImageBitmap.
                page.add_init_script("delete window.ImageDecoder;")
                page.goto(server.url("notebooks/explorer.ipynb"))
                page.wait_for_selector(
                    ".jp-Cell:has-text('hw.open_explorer(')", timeout=SERVER_S * 1000
                )
                assert page.evaluate("typeof ImageDecoder") == "undefined"
                page.wait_for_selector(
                    ".jp-Notebook-ExecutionIndicator[data-status='idle']",
                    timeout=SERVER_S * 1000,
                )
                # Run All Cells; a click while the kernel is still connecting is lost, so
                # it is repeated until the first code cell has run.
                for _ in range(3):
                    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                    try:  # a prompt [*] or [1]: the kernel took the cells
                        page.wait_for_function(
                            "() => [...document.querySelectorAll('.jp-InputPrompt')]"
                            ".some(p => /\\[(\\*|[0-9]+)\\]/.test(p.textContent))",
                            timeout=20_000,
                        )
                        break
                    except PlaywrightTimeout:
                        continue
                page.wait_for_function(
                    "() => { const s = document.querySelector('.holiwidget-status');"
                    " return s && /computed|error/.test(s.textContent); }",
                    timeout=FIRST_MAPS_S * 1000,
                )
                status = page.locator(STATUS).first.text_content()
                assert "computed" in status and "Egyptian cat" in status, status
                before = _settled(page, OVERLAY)
                grid_before = _settled(page, GRID_CANVAS)
                page.screenshot(path=str(ARTIFACTS / "notebook7-explorer.png"))
                # Drag the threshold slider's handle to the left with the mouse (Notebook 7
                # takes the arrow keys for its own shortcuts while a heading cell is active).
                handle = page.locator(".holiwidget-threshold .noUi-handle").first
                handle.scroll_into_view_if_needed()
                box = handle.bounding_box()
                x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
                page.mouse.move(x, y)
                page.mouse.down()
                page.mouse.move(x - 40, y, steps=8)
                page.mouse.up()
                page.wait_for_function(
                    "() => !document.querySelector('.holiwidget-status').textContent"
                    ".includes('computed')",
                    timeout=REDRAW_S * 1000,
                )
                _, diff = _wait_changed(page, OVERLAY, before)
                assert diff > 0.5, "the overlay did not change in Notebook 7"
                # the grid's frame: its Holistic-CAM column alone, drawn over the grid
                diff = _changed(grid_before, _settled(page, GRID_CANVAS))
                assert diff > 0.5, "the grid did not change in Notebook 7"
                page.screenshot(path=str(ARTIFACTS / "notebook7-threshold.png"))
            finally:
                browser.close()
    finally:
        alive = server.stop()
    assert alive == []
