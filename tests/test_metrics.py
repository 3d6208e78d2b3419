"""Metrics: Insertion, Deletion and the pointing game on hand-computable cases; bad input.

ROAD is tested in test_road.py, the sanity check in test_sanity.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SIDE
from torch import nn

from holiwidget import HoliwidgetError
from holiwidget.evaluation import cascade_groups
from holiwidget.metrics import (
    auc,
    box_mask,
    centre_prior,
    centre_prior_epg,
    deletion,
    energy_pointing_game,
    insertion,
    insertion_deletion,
    overall,
    road_scores,
)
from holiwidget.metrics.causal import blur, ranking

# ----------------------------------------------------------------------------- AUC, curves


def test_auc_of_known_curves() -> None:
    assert auc(np.linspace(0, 1, 225)) == pytest.approx(0.5)
    assert auc(np.ones(11)) == pytest.approx(1.0)
    assert auc([0.0, 1.0]) == pytest.approx(0.5)
    # a step at the middle: 0 then 1 -> area 0.5 - half a trapezoid of width 1/4
    assert auc([0, 0, 1, 1, 1]) == pytest.approx(0.625)
    # uneven abscissae: the last interval is short
    assert auc([1.0, 1.0, 0.0], [0.0, 0.9, 1.0]) == pytest.approx(0.95)
    np.testing.assert_allclose(auc(np.stack([np.zeros(5), np.ones(5)])), [0.0, 1.0])
    assert overall(np.array([0.7]), np.array([0.2]))[0] == pytest.approx(0.5)


def test_ranking_is_stable_and_blur_keeps_constants() -> None:
    m = torch.tensor([[[0.5, 1.0], [0.5, 0.5]]])
    assert ranking(m).tolist() == [[1, 0, 2, 3]]  # ties in raster order
    flat = torch.full((1, 3, 20, 20), 0.7)
    torch.testing.assert_close(blur(flat), flat)
    spike = torch.zeros(1, 1, 31, 31)
    spike[0, 0, 15, 15] = 1.0
    out = blur(spike)
    assert out.sum() == pytest.approx(1.0, abs=1e-6)
    g = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 5.0**2))
    g /= g.sum()  # the 11-tap, sigma-5 kernel
    np.testing.assert_allclose(out[0, 0, 10:21, 10:21].numpy(), np.outer(g, g), rtol=1e-5)


def test_insertion_deletion_perfect_map_beats_its_inverse(region_setup) -> None:
    model, x, bump = region_setup
    maps = np.stack([bump, 1 - bump])
    res = insertion_deletion(model, x, maps, 0, step=SIDE, device="cpu")
    ins, dele = res.insertion, res.deletion
    assert ins.curves.shape == (2, SIDE + 1) and dele.curves.shape == (2, SIDE + 1)
    np.testing.assert_allclose(ins.fractions, np.arange(SIDE + 1) / SIDE)
    p_full = 1 / (1 + np.exp(-4.0))  # region at 2.0
    # deletion starts at the image and ends at zero everywhere (region at 0)
    np.testing.assert_allclose(dele.curves[:, 0], p_full, rtol=1e-5)
    np.testing.assert_allclose(dele.curves[:, -1], 1 / (1 + np.exp(4.0)), rtol=1e-5)
    # insertion ends at the image
    np.testing.assert_allclose(ins.curves[:, -1], p_full, rtol=1e-5)
    # insertion starts at the blurred image
    p_blur = torch.softmax(model(blur(x[None])), 1)[0, 0].item()
    np.testing.assert_allclose(ins.curves[:, 0], p_blur, rtol=1e-5)
    assert ins.auc[0] > ins.auc[1] + 0.3
    assert dele.auc[0] < dele.auc[1] - 0.5
    assert res.overall[0] > 0.5 > 0.0 > res.overall[1]
    np.testing.assert_allclose(ins.auc, auc(ins.curves, ins.fractions))
    # the single-kind entry points agree with the combined one
    np.testing.assert_allclose(insertion(model, x, maps, 0, step=SIDE, device="cpu").auc, ins.auc)
    np.testing.assert_allclose(deletion(model, x, maps, 0, step=SIDE, device="cpu").auc, dele.auc)


def test_causal_curve_values_are_hand_computable() -> None:
    """A model that reads one pixel: deletion drops exactly when that pixel goes."""

    class OnePixel(nn.Module):
        def forward(self, x):
            v = x[:, 0, 2, 3]
            return torch.stack([10 * v, torch.zeros_like(v)], 1)

    x = torch.zeros(3, 5, 5)
    x[:, 2, 3] = 1.0
    ramp = torch.arange(25, dtype=torch.float32).flip(0).view(5, 5)  # raster order first
    res = deletion(OnePixel(), x, ramp, 0, step=4, device="cpu")
    # pixel (2, 3) has rank 13: it is gone from the 4th step (16 pixels changed) on
    high, low = 1 / (1 + np.exp(-10.0)), 0.5
    np.testing.assert_allclose(
        res.fractions, [0, 4 / 25, 8 / 25, 12 / 25, 16 / 25, 20 / 25, 24 / 25, 1.0]
    )
    np.testing.assert_allclose(res.curves[0], [high] * 4 + [low] * 4, rtol=1e-6)
    np.testing.assert_allclose(res.auc, auc(res.curves, res.fractions))


def test_causal_default_target_is_top1_and_model_is_restored(region_setup) -> None:
    model, x, bump = region_setup
    model.train()
    res = deletion(model, x, bump, step=SIDE, device="cpu")
    assert res.targets.tolist() == [0]
    assert model.training and model.gain.requires_grad


# ----------------------------------------------------------------------------------- EPG


def test_epg_of_hand_made_maps() -> None:
    mask = box_mask([[0, 0, 113.5, 227]], (227, 227), (224, 224))
    assert mask[:, :112].all() and not mask[:, 112:].any()
    assert box_mask([[0, 0, 227, 227]], (227, 227)).all()
    assert energy_pointing_game(mask.astype(float), mask)[0] == pytest.approx(1.0)
    assert energy_pointing_game(np.ones((224, 224)), mask)[0] == pytest.approx(mask.mean())
    assert energy_pointing_game(~mask * 1.0, mask)[0] == 0.0
    assert np.isnan(energy_pointing_game(np.zeros((224, 224)), mask)[0])
    # a box mapped from a non-square file
    small = box_mask([[10, 20, 30, 40]], (100, 200), (50, 50))
    rows, cols = np.nonzero(small)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 9, 5, 14)


def test_centre_prior_and_its_epg() -> None:
    prior = centre_prior(224, 224)
    assert prior.max() == pytest.approx(np.exp(-0.5 * 2 * (0.5 / 56) ** 2))
    np.testing.assert_allclose(prior, prior[::-1, ::-1])
    central = box_mask([[56, 56, 168, 168]], (224, 224))
    corner = box_mask([[0, 0, 112, 112]], (224, 224))
    scores = centre_prior_epg(np.stack([central, corner]))
    assert scores[0] > 0.45  # +-1 sigma of a Gaussian cut at +-2 sigma: 0.51
    assert scores[1] == pytest.approx(0.25)  # a quarter, by symmetry


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_reported_in_one_line(region_setup) -> None:
    model, x, bump = region_setup
    cases = [
        (lambda: deletion(model, x, bump, 0, step=0, device="cpu"), "step"),
        (lambda: insertion(model, x, bump[:10], 0, device="cpu"), "do not match"),
        (lambda: deletion(model, x.numpy(), bump, 0, device="cpu"), "tensor"),
        (lambda: deletion(model, x, np.stack([bump] * 3), [0, 0], device="cpu"), "targets"),
        (lambda: deletion(model, x, bump, 5, device="cpu"), "outside the model's"),
        (lambda: road_scores(model, x, bump, 0, percentiles=(0, 50), device="cpu"), "percentiles"),
        (lambda: road_scores(model, x, bump, 0, noise=-1, device="cpu"), "noise"),
        (lambda: road_scores(model, x, bump, 0, solver="magic", device="cpu"), "solver"),
        (lambda: box_mask([[0, 0, 300, 10]], (227, 227)), "outside"),
        (lambda: box_mask([[5, 5, 5, 10]], (227, 227)), "outside"),
        (lambda: energy_pointing_game(-np.ones((4, 4)), np.ones((4, 4))), "non-negative"),
        (lambda: energy_pointing_game(np.ones((4, 4)), np.ones((5, 5))), "same H x W"),
        (lambda: auc([1.0]), "curves"),
        (lambda: cascade_groups(nn.ReLU()), "no parameters"),
    ]
    for call, text in cases:
        with pytest.raises(HoliwidgetError, match=text) as info:
            call()
        assert "\n" not in str(info.value)
