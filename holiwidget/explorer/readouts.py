"""The explorer's text readouts as HTML: the status line and the probe's table.

Colours are JupyterLab's theme variables (with fallbacks), legible in light and dark themes.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
from matplotlib.colors import to_hex

from ..methods import COLORS, LABELS

__all__ = ["STATUS_COLORS", "probe_table", "status_html"]

#: Status colours by level.
STATUS_COLORS = {
    "ok": "var(--jp-success-color1, #1b5e20)",
    "warn": "var(--jp-warn-color1, #8a5a00)",
    "error": "var(--jp-error-color1, #b00020)",
    "info": "var(--jp-ui-font-color1, inherit)",
}


def status_html(text: str, level: str = "info") -> str:
    """One status line; ``level`` is ``ok``, ``warn``, ``error`` or ``info``."""
    return f'<span style="color:{STATUS_COLORS[level]}">{html.escape(text)}</span>'


def probe_table(
    pixel: tuple[int, int] | None,
    values: np.ndarray | None,
    layers: Sequence[str],
    methods: Sequence[str],
    current: tuple[int, int],
) -> str:
    """The probed pixel's values: layers (rows, full names) x methods (columns, headed in
    their colours), the current map's value in bold; a hint before any probe."""
    if pixel is None or values is None:
        return "<i>click a pixel of any map to probe it</i>"
    li, mi = current
    head = "".join(
        f'<th style="color:{to_hex(COLORS.get(m, "black"))}">{html.escape(LABELS.get(m, m))}</th>'
        for m in methods
    )
    rows = []
    for j, layer in enumerate(layers):
        cells = "".join(
            f"<td><b>{values[m, j]:.3f}</b></td>" if (m, j) == (mi, li) else f"<td>{values[m, j]:.3f}</td>"
            for m in range(len(methods))
        )  # fmt: skip
        rows.append(f"<tr><th>{html.escape(layer)}</th>{cells}</tr>")
    y, x = pixel
    return (
        f'<div class="holiwidget-probe-pixel">pixel (y {y}, x {x})</div>'
        f'<table style="font-size:10px;line-height:1.2"><tr><th></th>{head}</tr>'
        f"{''.join(rows)}</table>"
    )
