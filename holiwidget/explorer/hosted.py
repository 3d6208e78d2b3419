"""The explorer as a hosted app: its one entry point for notebooks and ``holiwidget app``.

The explorer notebook calls :func:`open_explorer`, which reads its settings from the
environment (``holiwidget app`` and ``holiwidget lab`` set them; a notebook's parameter
cell may override them):

- ``HOLIWIDGET_MODEL`` (default ``mobilenet_v2``) and ``HOLIWIDGET_WEIGHTS`` (default
  ``DEFAULT``, downloaded through torchvision where there is internet);
- ``HOLIWIDGET_IMAGE``: the first image (a sample name or a file);
- ``HOLIWIDGET_DATA``: the data folder. When set, the folder field and the exports are
  confined to it (paths outside are refused) and each export is also offered as a browser
  download: what a shared deployment needs;
- ``HOLIWIDGET_PASS_MEMORY``: megabytes a network pass may keep for its backward (larger
  passes keep it on disk: identical maps, lower peak memory; see :func:`holiwidget.explain`).
"""

from __future__ import annotations

import contextlib
import html
import io
import logging
import os
from collections.abc import Sequence

import ipywidgets as W

from ..errors import HoliwidgetError
from ..models import load_model
from .app import Explorer

__all__ = ["ENVIRONMENT", "open_explorer"]

log = logging.getLogger(__name__)

#: The environment variables the explorer notebook reads, and their defaults.
ENVIRONMENT = {
    "HOLIWIDGET_MODEL": "mobilenet_v2",
    "HOLIWIDGET_WEIGHTS": "DEFAULT",
    "HOLIWIDGET_IMAGE": "chelsea",
    "HOLIWIDGET_DATA": "",
    "HOLIWIDGET_PASS_MEMORY": "",
}


def _message(title: str, problem: str, hint: str) -> W.HTML:
    return W.HTML(
        '<div class="holiwidget-error" style="border:2px solid #b00020;padding:12px;'
        'max-width:760px;border-radius:6px">'
        f"<b>{html.escape(title)}</b><br>{html.escape(problem)}<br><br>{hint}</div>"
    )


def _weights_message(model: str, weights: str, problem: str) -> W.HTML:
    return _message(
        f"The explorer cannot start: the weights of {model} ({weights}) could not be loaded.",
        problem,
        "Pass a weights file: <code>holiwidget app --weights FILE.pth</code>, or set "
        "<code>HOLIWIDGET_WEIGHTS=FILE.pth</code> before starting the app (or the notebook). "
        "<code>DEFAULT</code> downloads torchvision's weights, which needs internet.",
    )


def open_explorer(
    model: str | None = None,
    weights: str | None = None,
    image: str | None = None,
    *,
    methods: str | Sequence[str] = ("holistic", "gradcam", "gradcampp", "layercam", "cameras"),
    layers: str | Sequence[str] = "auto",
    data: str | os.PathLike | None = None,
) -> object:
    """The explorer for a notebook or the hosted app, or one clear message if it cannot start.

    Arguments left out come from the environment (see the module's notes). The explorer is
    shown at once; its first maps are computed after it is displayed, in the background,
    with its own status line and progress bar.

    Returns:
        An :class:`holiwidget.Explorer` (display it), or an HTML message (a model or weights
        that cannot be loaded: offline ``DEFAULT`` weights, a missing file) saying what to pass.
    """
    env = {k: os.environ.get(k) or v for k, v in ENVIRONMENT.items()}
    model = model or env["HOLIWIDGET_MODEL"]
    weights = weights or env["HOLIWIDGET_WEIGHTS"]
    image = image or env["HOLIWIDGET_IMAGE"]
    folder = data if data is not None else (env["HOLIWIDGET_DATA"] or None)
    try:
        budget = float(env["HOLIWIDGET_PASS_MEMORY"]) if env["HOLIWIDGET_PASS_MEMORY"] else None
    except ValueError:
        return _message(
            "The explorer cannot start: HOLIWIDGET_PASS_MEMORY must be a number of megabytes",
            f"got {env['HOLIWIDGET_PASS_MEMORY']!r}",
            "Unset it, or set it to e.g. 64.",
        )
    try:
        # torch.hub's download notes (stdout) and progress (stderr) are not the app's
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            net = load_model(model, weights=weights)
    except HoliwidgetError as exc:
        log.warning("explorer not started: %s", exc)
        if str(exc).startswith("unknown model"):
            return _message(
                f"The explorer cannot start: there is no model {model!r}.",
                str(exc),
                "Pass a torchvision classifier's name: <code>holiwidget app --model NAME</code>"
                " or <code>HOLIWIDGET_MODEL=NAME</code>.",
            )
        return _weights_message(model, weights, str(exc))
    try:
        return Explorer(
            net,
            images=[image],
            layers=layers,
            methods=methods,
            data=folder,
            defer=True,
            pass_memory=budget,
        )
    except HoliwidgetError as exc:  # an image, layer or data folder it cannot use
        log.warning("explorer not started: %s", exc)
        return _message(
            "The explorer cannot start.",
            str(exc),
            "Change the setting it names (<code>holiwidget app --image</code>, "
            "<code>--data</code>, or the notebook's parameter cell) and start it again.",
        )
