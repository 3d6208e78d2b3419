"""Hosting: `holiwidget lab` and `holiwidget app` from a regular (non-editable) install run
from another folder, and the Binder set-up, checked as far as it can be offline
(repo2docker's file conventions, the badge's Voila link, the environment's entry points)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from test_app import App
from test_lab import jupyter_env

from holiwidget.cli.app import APP_PASS_MEMORY

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """holiwidget installed as a wheel would be (no source checkout on the path)."""
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--target", str(target), str(REPO)),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return target


def _env(folder: Path, site: Path) -> dict[str, str]:
    return {**jupyter_env(folder), "PYTHONPATH": str(site), "HOME": str(folder / "home")}


def test_lab_from_a_regular_install_copies_the_packaged_notebook(installed, tmp_path) -> None:
    packaged = installed / "holiwidget" / "notebooks" / "explorer.ipynb"
    assert packaged.is_file() and not packaged.is_symlink()
    assert packaged.read_bytes() == (REPO / "notebooks" / "explorer.ipynb").read_bytes()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = subprocess.run(
        [sys.executable, "-c", "import holiwidget; print(holiwidget.__file__)"],
        cwd=elsewhere,
        env=_env(tmp_path, installed),
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip().startswith(str(installed)), probe.stdout + probe.stderr
    done = subprocess.run(
        [
            *(sys.executable, "-m", "holiwidget", "lab", "--no-browser"),
            *("--workdir", str(tmp_path / "work"), "--", "--version"),
        ],
        cwd=elsewhere,
        env=_env(tmp_path, installed),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (
        tmp_path / "work" / "notebooks" / "explorer.ipynb"
    ).read_bytes() == packaged.read_bytes()
    # The notebook's first cell says how to run it.
    first = json.loads(packaged.read_text())["cells"][0]
    assert first["cell_type"] == "markdown" and "Run All Cells" in "".join(first["source"])


def test_app_from_a_regular_install_serves_the_explorer(installed, tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    app = App(tmp_path, "--data", tmp_path / "data", env=_env(tmp_path, installed), cwd=elsewhere)
    try:
        page = urllib.request.urlopen(app.url, timeout=30).read().decode()
        assert "<title>explorer</title>" in page or "voila" in page.lower()
        assert (tmp_path / "data").is_dir()
    finally:
        status, alive = app.stop()
    assert alive == [] and status == 0, app.log()[-2000:]


def test_binder_follows_repo2docker_conventions() -> None:
    modes = subprocess.run(
        ["git", "ls-files", "-s", "binder"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    mode = {line.split()[-1]: line.split()[0] for line in modes.splitlines()}
    assert mode["binder/postBuild"] == "100755" and mode["binder/start"] == "100755"
    assert re.fullmatch(r"python-3\.1[0-3]\n?", (BINDER / "runtime.txt").read_text())
    post = (BINDER / "postBuild").read_text()
    assert post.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in post
    assert "download.pytorch.org/whl/cpu" in post and "torch torchvision" in post
    assert re.search(r"^pip install --no-cache-dir \.$", post, re.M)  # the package, regular
    start = (BINDER / "start").read_text()
    assert start.startswith("#!/usr/bin/env bash") and start.rstrip().endswith('exec "$@"')
    requirements = (BINDER / "requirements.txt").read_text().split()
    assert "jupyterlab>=4.1" in requirements


def test_binder_start_sets_the_apps_data_folder(tmp_path) -> None:
    env = {**jupyter_env(tmp_path), "HOME": str(tmp_path)}
    env.pop("HOLIWIDGET_DATA", None)
    done = subprocess.run(
        ["bash", str(BINDER / "start"), sys.executable, "-m", "holiwidget", "app", "--help"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "the explorer as a standalone web app" in done.stdout.lower() or "Voila" in done.stdout
    assert (tmp_path / "holiwidget-app").is_dir()
    # The kernel's memory budget on Binder is the app's default (the 2 GB that it gives).
    env.pop("HOLIWIDGET_PASS_MEMORY", None)
    shown = subprocess.run(
        ["bash", str(BINDER / "start"), "printenv", "HOLIWIDGET_PASS_MEMORY"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == str(APP_PASS_MEMORY)


def test_readme_binder_badge_opens_the_app() -> None:
    readme = (REPO / "README.md").read_text()
    link = re.search(r"\(https://mybinder\.org/v2/gh/([^)\s]+)\)", readme)
    assert link, "no Binder badge link in the README"
    urlpath = re.search(r"urlpath=([^&)\s]+)", link.group(1)).group(1)
    assert urlpath.startswith("voila/render/")
    notebook = REPO / urlpath.removeprefix("voila/render/")
    assert notebook.is_file() and notebook.resolve().name == "explorer.ipynb"
    # voila's server extension is enabled in this environment (what the link needs)
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "server", "extension", "list"],
        capture_output=True,
        text=True,
    )
    listing = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)  # no colours
    assert re.search(r"voila\S*\s+enabled", listing), listing


def test_open_explorer_says_what_to_change_instead_of_a_cell_error(
    tmp_path, mobilenet_weights
) -> None:
    """What the app shows when it cannot start: one message naming the setting, no raise."""
    import ipywidgets

    import holiwidget as hw

    unknown = hw.open_explorer("nosuchnet", str(mobilenet_weights), "chelsea")
    assert isinstance(unknown, ipywidgets.HTML)
    assert "there is no model &#x27;nosuchnet&#x27;" in unknown.value
    no_folder = hw.open_explorer(
        "mobilenet_v2", str(mobilenet_weights), "chelsea", data=tmp_path / "missing"
    )
    assert isinstance(no_folder, ipywidgets.HTML)
    assert "does not exist; create it first" in no_folder.value
    assert "--data" in no_folder.value
