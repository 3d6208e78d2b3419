"""The compiled CPU fusion against torch's own interpolation and PGE, on random stacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from holiwidget.fusion_cpu import pyramid_products
from holiwidget.methods.holistic import pge_from_totals, pge_weights


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]


def _channels_last(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).contiguous().numpy()


def _within(ours: np.ndarray, x: torch.Tensor, y: torch.Tensor) -> None:
    """``ours`` equals ``sum_k x[k] y[k]`` to float rounding: within 1e-5 of the largest sum of
    the terms' magnitudes (signed gradients make some sums cancel to nearly nothing)."""
    terms = x * y
    scale = float(terms.abs().sum(0).max())
    assert scale > 0
    diff = float(np.abs(ours - terms.sum(0).numpy()).max())
    assert diff <= 1e-5 * scale, (diff, scale)


@pytest.mark.parametrize(
    ("channels", "sides", "size"),
    [
        (64, [7, 11, 14, 17, 20, 23, 26, 29], (224, 224)),  # deep layer: upsampling only
        (16, [56, 81, 106, 131, 156, 181, 206, 231], (224, 224)),  # shallow: 231 > 224 too
        (8, [(6, 9), (9, 13), (12, 17)], (40, 56)),  # rectangular maps and output
        (5, [(1, 1), (2, 3), (3, 2)], (16, 12)),  # one-pixel maps, odd channel counts
    ],
)
def test_pyramid_products_equal_naive_fusion(channels: int, sides: list, size: tuple) -> None:
    gen = torch.Generator().manual_seed(channels)
    shapes = [s if isinstance(s, tuple) else (s, s) for s in sides]
    a = [torch.rand(channels, *s, generator=gen) for s in shapes]
    g = [torch.randn(channels, *s, generator=gen) * 1e-3 for s in shapes]
    xs, ys = [_channels_last(t) for t in a], [_channels_last(t) for t in g]
    abar = sum(_up(t, size) for t in a) / len(a)

    # plain products (CAMERAS: the gradients as they are)
    mean, base = pyramid_products(xs, ys, size)
    gbar = sum(_up(t, size) for t in g) / len(g)
    _within(mean, gbar, abar)
    _within(base, _up(g[0], size), _up(a[0], size))

    # with totals, the gradients become Holistic-CAM's PGE weights where they are read
    totals = np.stack([t.sum(dim=(1, 2)).numpy() for t in a])
    mean, base = pyramid_products(xs, ys, size, totals=totals)
    w = [pge_weights(x, y) for x, y in zip(a, g, strict=True)]
    wbar = sum(_up(t, size) for t in w) / len(w)
    _within(mean, wbar, abar)
    _within(base, _up(w[0], size), _up(a[0], size))

    # rows shared out over threads give the same bits as one thread
    threaded = pyramid_products(xs, ys, size, totals=totals, threads=3)
    assert np.array_equal(threaded[0], mean) and np.array_equal(threaded[1], base)


def test_pge_inside_the_fusion_is_pge_from_totals_to_the_bit() -> None:
    """One-pixel maps and one-hot activations read the weights out one channel at a time."""
    gen = torch.Generator().manual_seed(1)
    channels = 64
    g = torch.randn(channels, 1, 1, generator=gen) * 1e-3
    g[::7] = 0  # G+ == 0 gives 0
    totals = torch.rand(channels, generator=gen) * 10
    want = pge_from_totals(g, totals.view(-1, 1, 1)).flatten()
    got = []
    for k in range(channels):
        one_hot = np.zeros((1, 1, channels), dtype=np.float32)
        one_hot[0, 0, k] = 1
        mean, _ = pyramid_products(
            [one_hot], [_channels_last(g)], (1, 1), totals=totals.numpy()[None]
        )
        got.append(mean[0, 0])
    assert np.array_equal(np.array(got, dtype=np.float32), want.numpy())


def test_mismatched_stacks_are_refused() -> None:
    a = np.zeros((4, 4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="shapes differ"):
        pyramid_products([a], [np.zeros((4, 5, 3), dtype=np.float32)], (8, 8))
    with pytest.raises(ValueError, match="C-contiguous float32"):
        pyramid_products([a], [a.astype(np.float64)], (8, 8))
