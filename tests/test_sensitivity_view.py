"""The explorer's sweep heatmaps (SensitivityView) on the committed MobileNetV2 sweep.

Real figures on an Agg canvas, real clicks through the canvas' callbacks, no mocks.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from matplotlib.backend_bases import MouseButton, MouseEvent
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import holiwidget
from holiwidget.errors import HoliwidgetError
from holiwidget.explorer.sensitivity import SensitivityView
from holiwidget.sweeps.summary import sensitivity_table

SWEEP = Path(__file__).parents[1] / "docs/results/sweep-mobilenet_v2-imagenet-val66.nc"
LAYERS = ["features.18", "features.6.conv.0"]


@pytest.fixture(scope="module")
def results():
    return holiwidget.open_dataset(SWEEP)


@pytest.fixture
def shown(results):
    """A view of the sweep on an Agg figure, and the list its clicks are recorded in."""
    fig = Figure(dpi=72)
    FigureCanvasAgg(fig)
    picks: list[tuple[float, int, int]] = []
    view = SensitivityView(fig, lambda *args: picks.append(args))
    view.set_results(results)
    return view, fig, picks


def _heatmaps(fig: Figure) -> list:
    """The heatmap axes (the colour bar's axes carry no image)."""
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def _table(results, layer, metric="overall", threshold=0.5) -> np.ndarray:
    return sensitivity_table(results, layer, metric, threshold=threshold).to_numpy(np.float64)


def _click(fig: Figure, ax, m_index: float, b_index: float, button=MouseButton.LEFT) -> None:
    x, y = ax.transData.transform((m_index, b_index))
    event = MouseEvent("button_press_event", fig.canvas, x, y, button=button)
    fig.canvas.callbacks.process("button_press_event", event)


def test_placeholder_then_one_heatmap_per_layer_from_sensitivity_table(results):
    fig = Figure()
    FigureCanvasAgg(fig)
    view = SensitivityView(fig, lambda *args: None)
    assert any("explorer.show_sweep(results)" in t.get_text() for t in fig.texts)
    size = tuple(fig.get_size_inches())
    view.set_results(results)
    assert not any("show_sweep" in t.get_text() for t in fig.texts)
    assert view.layers == LAYERS
    assert view.metric == "overall"
    assert view.metrics == ["insertion", "deletion", "overall", "epg"]
    assert view.threshold == 0.5 and view.scales == "224..924"
    assert view.medians == view.boxes == [31, 51, 71, 91, 111, 131]
    axes = _heatmaps(fig)
    assert len(axes) == 2
    norms = set()
    for ax, layer in zip(axes, LAYERS, strict=True):
        expected = _table(results, layer)
        np.testing.assert_array_equal(view.values(layer), expected)
        np.testing.assert_array_equal(np.ma.filled(ax.images[0].get_array(), np.nan), expected)
        assert ax.get_title() == f"{layer}  Over-all ↑"
        assert ax.get_xlabel() == "median m (px at 224)"
        assert ax.get_ylabel() == "box b (px at 224)"
        assert ax.texts[0].get_text() == f"{expected[0, 0]:.1f}"
        assert ax.texts[0].get_fontsize() >= 8
        norms.add((ax.images[0].norm.vmin, ax.images[0].norm.vmax))
    assert len(norms) == 1  # one colour scale for both layers
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert bar.get_ylabel() == "Over-all x100"
    assert fig.get_size_inches() == pytest.approx(size)  # the page's tile keeps its size


def test_mark_moves_the_outline_and_swaps_the_plane_in_place(results, shown):
    view, fig, _ = shown
    axes = _heatmaps(fig)
    view.mark(0.5, 71, 111, layer="features.18")
    for ax in axes:
        (outline,) = ax.patches
        assert outline.get_visible()
        assert outline.get_xy() == (2 - 0.5, 4 - 0.5)  # m 71 is column 2, b 111 row 4
    value = _table(results, "features.18")[4, 2]
    title = fig.get_suptitle()
    assert "τ 0.5 plane" in title and f"features.18 {value:.1f}" in title
    frames = [ax.spines["left"].get_linewidth() for ax in axes]
    assert frames[0] > frames[1]  # the explorer's layer is highlighted

    images = [ax.images[0] for ax in axes]
    texts = [list(ax.texts) for ax in axes]
    view.mark(0.3, 51, 91, layer="features.6.conv.0")  # nearest plane: tau 0.25
    assert view.threshold == 0.25
    assert "τ 0.25 plane" in fig.get_suptitle() and "nearest" in fig.get_suptitle()
    for ax, layer, image, cells in zip(axes, LAYERS, images, texts, strict=True):
        assert list(ax.images) == [image] and list(ax.texts) == cells  # same artists: no re-plot
        expected = _table(results, layer, threshold=0.25)
        assert np.isfinite(expected).sum() == 1  # the star design: only the reference cell
        np.testing.assert_array_equal(np.ma.filled(image.get_array(), np.nan), expected)
        np.testing.assert_array_equal(view.values(layer), expected)
        assert cells[3 * 6 + 1].get_text() == f"{expected[3, 1]:.1f}"  # b 91, m 51
        assert cells[0].get_text() == ""
        assert ax.patches[0].get_xy() == (1 - 0.5, 3 - 0.5)
    frames = [ax.spines["left"].get_linewidth() for ax in axes]
    assert frames[1] > frames[0]


def test_off_grid_and_denoising_off_hide_the_outline(shown):
    view, fig, _ = shown
    view.mark(0.5, 41, 91)
    assert not any(ax.patches[0].get_visible() for ax in _heatmaps(fig))
    assert "off the sweep's grid" in fig.get_suptitle()
    view.mark(0.5, 51, 91, denoise=False)
    assert not any(ax.patches[0].get_visible() for ax in _heatmaps(fig))
    assert "denoising off" in fig.get_suptitle()
    view.mark(0.5, 51, 91)
    assert all(ax.patches[0].get_visible() for ax in _heatmaps(fig))


def test_a_click_on_a_cell_picks_its_setting(shown):
    _, fig, picks = shown
    ax = _heatmaps(fig)[1]
    fig.canvas.draw()  # lay the axes out (constrained layout) before asking where cells are
    _click(fig, ax, 4, 0)  # m 111, b 31
    assert picks == [(0.5, 111, 31)]
    assert type(picks[0][0]) is float and type(picks[0][1]) is int
    _click(fig, ax, 4.3, 0.4)  # anywhere inside the cell
    assert picks[-1] == (0.5, 111, 31)


def test_clicks_on_nan_cells_outside_or_with_another_button_do_nothing(shown):
    view, fig, picks = shown
    view.mark(0.25, 51, 91)
    ax = _heatmaps(fig)[0]
    fig.canvas.draw()
    _click(fig, ax, 0, 0)  # not computed at tau 0.25
    _click(fig, ax, 1, 3, button=MouseButton.RIGHT)
    (bar,) = [a for a in fig.axes if a.get_label() == "<colorbar>"]
    _click(fig, bar, 0.5, 45)
    event = MouseEvent("button_press_event", fig.canvas, 1, 1, button=MouseButton.LEFT)
    fig.canvas.callbacks.process("button_press_event", event)  # the figure's corner
    assert picks == []
    _click(fig, ax, 1, 3)  # b 91, m 51: the one computed cell of the plane
    assert picks == [(0.25, 51, 91)]


def test_set_metric_switches_the_data_and_keeps_the_mark(results, shown):
    view, fig, _ = shown
    view.mark(0.75, 51, 91)
    view.set_metric("deletion")
    assert view.metric == "deletion" and view.threshold == 0.75
    for ax, layer in zip(_heatmaps(fig), LAYERS, strict=True):
        expected = _table(results, layer, "deletion", threshold=0.75)
        np.testing.assert_array_equal(view.values(layer), expected)
        assert ax.get_title().endswith("Del ↓")
        assert ax.patches[0].get_visible()


def test_bad_input_is_one_line(results, shown):
    view, _, _ = shown
    fig = Figure()
    FigureCanvasAgg(fig)
    with pytest.raises(HoliwidgetError, match="set_results") as info:
        SensitivityView(fig, lambda *args: None).set_metric("overall")
    assert "\n" not in str(info.value)
    cases = [
        ((results.drop_vars("score"),), {}, "no `score`"),
        ((results,), {"metric": "road"}, "metric 'road' is not in the sweep; choose from"),
        ((results,), {"scales": "999"}, "scales '999' is not in the sweep"),
        ((results["score"],), {}, "not a sweep result: got DataArray"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(HoliwidgetError, match=message) as info:
            view.set_results(*args, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(HoliwidgetError, match="not in the sweep"):
        view.set_metric("accuracy")
    assert view.metric == "overall"  # a refused call leaves the view as it was
    with pytest.raises(HoliwidgetError, match=r"layer 'features\.0'"):
        view.values("features.0")


def test_the_figure_renders(shown, tmp_path):
    view, fig, _ = shown
    view.mark(0.5, 51, 91, layer="features.18")
    path = tmp_path / "sensitivity.png"
    fig.savefig(path)
    pixels = matplotlib.image.imread(path)[..., :3]
    assert pixels.shape[0] > 100 and pixels.shape[1] > 300
    assert pixels.std() > 0.1
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100
