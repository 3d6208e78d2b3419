"""`holiwidget app` in a real browser: Voila on the packaged explorer notebook, Debian's
chromium driven by Playwright.

The app is started exactly as the README's main job starts it (offline, with the shared
weights), on a free loopback port: the explorer must render without any click, a threshold
key press must change the overlay's pixels, the probe must work, a path outside the data
folder must be refused, an export must reach the browser as a download, and SIGTERM must
leave no process (checked by PID). Without weights and without internet the app shows one
message saying how to pass them, no traceback. Screenshots go to test-artifacts/app/.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from test_explorer_browser import (
    CHROMIUM_ARGS,
    OVERLAY,
    PROBE_CANVAS,
    REDRAW_S,
    STATUS,
    _chromium,
    _settled,
    _wait_changed,
)
from test_lab import jupyter_env

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("HOLIWIDGET_TEST_ARTIFACTS", REPO / "test-artifacts")) / "app"
# Seconds: Voila's start; the explorer shown (a kernel, torch, the model); the first maps.
SERVER_S, SHOWN_S, FIRST_MAPS_S, STOP_S = 60, 90, 180, 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """``holiwidget app ARGS --no-browser --port P`` in a subprocess, waited for."""

    def __init__(
        self,
        folder: Path,
        *args: object,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.port = _free_port()
        self.log_path = folder / "app.log"
        cmd = [
            *(sys.executable, "-m", "holiwidget", "app", "--no-browser"),
            *("--port", str(self.port), *map(str, args)),
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env or jupyter_env(folder), cwd=cwd
            )
        deadline = time.monotonic() + SERVER_S
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=5).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"the app did not start:\n{self.log()[-3000:]}")
                time.sleep(0.5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> tuple[int | None, list[psutil.Process]]:
        procs = self.processes()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            status = None
        _, alive = psutil.wait_procs(procs, timeout=STOP_S)
        for p in alive:
            p.kill()
        if status is None:
            self.proc.kill()
            self.proc.wait()
        return status, alive


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_app_shows_the_explorer_and_stops_cleanly(tmp_path, mobilenet_weights, browser) -> None:
    data = tmp_path / "data"
    app = App(tmp_path, "--weights", mobilenet_weights, "--data", data)
    pids = [p.pid for p in app.processes()]
    try:
        assert f"holiwidget app: the explorer is at {app.url}" in app.log()
        page = browser.new_page(viewport={"width": 1600, "height": 1200}, accept_downloads=True)
        started = time.monotonic()
        page.goto(app.url)
        # No click: the explorer appears by itself, before its first maps are done.
        page.wait_for_selector(STATUS, timeout=SHOWN_S * 1000)
        shown_s = time.monotonic() - started
        page.screenshot(path=str(ARTIFACTS / "1-shown.png"))
        assert "hw.open_explorer" not in page.content()  # code cells are not shown
        assert "explorer.threshold.value" not in page.content()  # nor the scripting notes
        page.wait_for_function(
            "() => { const s = document.querySelector('.holiwidget-status');"
            " return s && /computed|error/.test(s.textContent); }",
            timeout=FIRST_MAPS_S * 1000,
        )
        status = page.locator(STATUS).first.text_content()
        assert "computed" in status and "Egyptian cat" in status, status
        assert shown_s < time.monotonic() - started  # shown before the maps were done
        before = _settled(page, OVERLAY)
        page.screenshot(path=str(ARTIFACTS / "2-explorer.png"))

        handle = page.locator(".holiwidget-threshold .noUi-handle").first
        handle.scroll_into_view_if_needed()
        handle.focus()
        page.keyboard.press("ArrowLeft")
        page.wait_for_function(
            "() => document.querySelector('.holiwidget-status').textContent.includes('τ 0.49')",
            timeout=REDRAW_S * 1000,
        )
        _, diff = _wait_changed(page, OVERLAY, before)
        assert diff > 0.05, "one threshold key press did not change the overlay"

        probe_before = _settled(page, PROBE_CANVAS)
        box = page.locator(OVERLAY).first.bounding_box()
        page.mouse.click(box["x"] + 0.45 * box["width"], box["y"] + 0.6 * box["height"])
        page.wait_for_function(
            "() => document.querySelector('.holiwidget-probe').textContent.includes('pixel (y')",
            timeout=REDRAW_S * 1000,
        )
        _, probe_diff = _wait_changed(page, PROBE_CANVAS, probe_before)
        assert probe_diff > 0.5, "the probe did not change after the click"

        # A folder outside the data folder is refused, in the app's status line.
        page.locator(".holiwidget-folder input").fill("/etc")
        page.locator(".holiwidget-load-folder").click()
        page.wait_for_function(
            "() => document.querySelector('.holiwidget-status').textContent.includes('outside')",
            timeout=REDRAW_S * 1000,
        )
        status = page.locator(STATUS).first.text_content()
        assert "is outside the data folder" in status and str(data) in status, status
        page.screenshot(path=str(ARTIFACTS / "3-refused.png"))

        # An export lands in the data folder and reaches the browser as a download.
        page.locator(".holiwidget-export-path input").fill("cat-figure")
        page.locator(".holiwidget-save-figure-button").click()
        link = page.locator("a.holiwidget-download")
        link.wait_for(timeout=REDRAW_S * 1000)
        with page.expect_download() as info:
            link.click()
        download = info.value
        assert download.suggested_filename == "cat-figure.png"
        saved = tmp_path / "downloaded.png"
        download.save_as(saved)
        assert saved.read_bytes() == (data / "cat-figure.png").read_bytes()
        assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # the refusal before it is cleared by this success: no red bar left behind
        assert "progress-bar-danger" not in page.locator(".holiwidget-progress").inner_html()
        page.screenshot(path=str(ARTIFACTS / "4-download.png"))
    finally:
        status, alive = app.stop()
    assert alive == [], f"left running after SIGTERM: {alive}"
    assert status == 0, app.log()[-2000:]
    assert not [pid for pid in pids if psutil.pid_exists(pid)]
    assert "Kernel shutdown" in app.log()


def test_app_without_weights_offline_says_how_to_pass_them(tmp_path, browser) -> None:
    home = tmp_path / "home"  # no cached torchvision weights here
    home.mkdir()
    env = {
        **jupyter_env(tmp_path),
        "HOME": str(home),
        "TORCH_HOME": str(home / "torch"),
        # no internet: a proxy that does not exist
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
    }
    env.pop("HOLIWIDGET_WEIGHTS", None)
    app = App(tmp_path, "--data", tmp_path / "data", env=env)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(app.url)
        page.wait_for_selector(".holiwidget-error", timeout=SHOWN_S * 1000)
        text = page.locator(".holiwidget-error").first.text_content()
        page.screenshot(path=str(ARTIFACTS / "no-weights.png"))
        assert "could not be loaded" in text and "--weights" in text
        assert "HOLIWIDGET_WEIGHTS" in text
        body = page.locator("body").text_content()
        assert "Traceback" not in body and "error when executing" not in body.lower()
        assert "Downloading" not in body  # torch.hub's notes stay off the page
    finally:
        status, alive = app.stop()
    assert alive == [] and status == 0
