"""The demo notebooks run top to bottom in a real Jupyter kernel."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_explain_notebook_runs(mobilenet_weights: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOLIWIDGET_WEIGHTS", str(mobilenet_weights))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    nb = nbformat.read(NOTEBOOKS / "explain.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the figure cell shows no image"
    assert "Egyptian cat" in str(outputs), os.environ.get("HOLIWIDGET_WEIGHTS")


def test_sensitivity_notebook_runs(mobilenet_weights: Path, shared: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOLIWIDGET_WEIGHTS", str(mobilenet_weights))
    monkeypatch.setenv("HOLIWIDGET_SHARED", str(shared))
    monkeypatch.setenv("HOLIWIDGET_SWEEP_IMAGES", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    nb = nbformat.read(NOTEBOOKS / "sensitivity.ipynb", as_version=4)
    # A smaller run of the same cells, its parameters set as papermill would: one layer and
    # a coarser step (the notebook's own grid of settings, both pyramids, two images).
    parameters = next(c for c in nb.cells if c.cell_type == "code" and "# Parameters" in c.source)
    parameters.source += '\nLAYERS = ["features.18"]\nSTEP = 7168\n'
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no heatmaps shown"
    assert "imagenet-val-1300" in str(outputs)  # the shared subset, not the samples
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("difference" in t for t in tables) and any(">b<" in t for t in tables)
