"""The fusion (holiwidget.fusion): its torch ways and its compiled CPU loops against torch's
own interpolation and PGE on random stacks, and against each other on a real network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
from conftest import rel_diff

import holiwidget
from holiwidget.fusion.bilinear import bilinear_matrix
from holiwidget.fusion.compiled import compiled_products
from holiwidget.fusion.products import torch_products
from holiwidget.methods.finish import resize_maps
from holiwidget.methods.holistic import pge_from_totals, pge_weights


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]


# --------------------------------------------------------------------------------------
# The torch ways (banded and Gram) and bilinear matrices


@pytest.mark.parametrize(("n_in", "n_out"), [(7, 224), (29, 224), (231, 224), (224, 224), (5, 3)])
def test_bilinear_matrix_is_torch_interpolation(n_in: int, n_out: int) -> None:
    x = torch.rand(3, n_in, n_in, generator=torch.Generator().manual_seed(n_in))
    r = bilinear_matrix(n_in, n_out, dtype=torch.float64)
    ours = r @ x.double() @ r.T
    assert torch.allclose(ours.float(), _up(x, (n_out, n_out)), atol=1e-6)
    assert torch.allclose(r.sum(1), torch.ones(n_out, dtype=torch.float64))


@pytest.mark.parametrize(
    ("channels", "sides", "size"),
    [
        (64, [7, 11, 14, 17, 20, 23, 26, 29], (224, 224)),  # deep layer: upsampling only
        (16, [56, 81, 106, 131, 156, 181, 206, 231], (224, 224)),  # shallow: 231 > 224 too
        (8, [(6, 9), (9, 13), (12, 17)], (40, 56)),  # rectangular maps and output
    ],
)
def test_torch_products_equal_naive_fusion(
    channels: int, sides: list, size: tuple[int, int]
) -> None:
    gen = torch.Generator().manual_seed(channels)
    shapes = [s if isinstance(s, tuple) else (s, s) for s in sides]
    w = [torch.rand(channels, *s, generator=gen) for s in shapes]
    a = [torch.rand(channels, *s, generator=gen) for s in shapes]
    g = [torch.randn(channels, *s, generator=gen) for s in shapes]
    fused, base = {}, {}
    fused[("w", "a")], base[("w", "a")] = torch_products(w, a, size)
    fused[("g", "a")], _ = torch_products(g, a, size)
    abar = sum(_up(t, size) for t in a) / len(a)
    for name, stack in (("w", w), ("g", g)):
        bar = sum(_up(t, size) for t in stack) / len(stack)
        naive = (bar * abar).sum(0)
        span = float(naive.max() - naive.min())
        assert float((fused[(name, "a")] - naive).abs().max()) <= 1e-5 * span
    naive_base = (_up(w[0], size) * _up(a[0], size)).sum(0)
    span = float(naive_base.max() - naive_base.min())
    assert float((base[("w", "a")] - naive_base).abs().max()) <= 1e-5 * span


def test_resize_maps_keeps_leading_dims() -> None:
    maps = torch.rand(2, 3, 7, 7)
    out = resize_maps(maps, (224, 224))
    assert out.shape == (2, 3, 224, 224)
    assert torch.allclose(out[1, 2], _up(maps[1, 2][None], (224, 224))[0])


@pytest.mark.parametrize("sides", [[7, 11, 14, 72, 80], [7, 11, 14]])
def test_torch_products_accept_channels_last_stacks(sides: list[int]) -> None:
    """Both fusion paths (fine stacks: tiled upsampling; coarse ones: Gram matrices)."""
    gen = torch.Generator().manual_seed(3)
    a = [torch.rand(1, 32, s, s, generator=gen) for s in sides]
    w = [torch.rand(1, 32, s, s, generator=gen) for s in sides]
    plain, plain_base = {}, {}
    plain[("w", "a")], plain_base[("w", "a")] = torch_products(
        [t[0] for t in w], [t[0] for t in a], (64, 64)
    )
    last = [t.contiguous(memory_format=torch.channels_last)[0] for t in (*w, *a)]
    assert not last[0].is_contiguous()
    ours, ours_base = {}, {}
    ours[("w", "a")], ours_base[("w", "a")] = torch_products(
        last[: len(sides)], last[len(sides) :], (64, 64)
    )
    assert torch.allclose(ours[("w", "a")], plain[("w", "a")], rtol=1e-5, atol=1e-6)
    assert torch.allclose(ours_base[("w", "a")], plain_base[("w", "a")], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------
# The compiled CPU loops


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
def test_compiled_products_equal_naive_fusion(channels: int, sides: list, size: tuple) -> None:
    gen = torch.Generator().manual_seed(channels)
    shapes = [s if isinstance(s, tuple) else (s, s) for s in sides]
    a = [torch.rand(channels, *s, generator=gen) for s in shapes]
    g = [torch.randn(channels, *s, generator=gen) * 1e-3 for s in shapes]
    xs, ys = [_channels_last(t) for t in a], [_channels_last(t) for t in g]
    abar = sum(_up(t, size) for t in a) / len(a)

    # plain products (CAMERAS: the gradients as they are)
    mean, base = compiled_products(xs, ys, size)
    gbar = sum(_up(t, size) for t in g) / len(g)
    _within(mean, gbar, abar)
    _within(base, _up(g[0], size), _up(a[0], size))

    # with totals, the gradients become Holistic-CAM's PGE weights where they are read
    totals = np.stack([t.sum(dim=(1, 2)).numpy() for t in a])
    mean, base = compiled_products(xs, ys, size, totals=totals)
    w = [pge_weights(x, y) for x, y in zip(a, g, strict=True)]
    wbar = sum(_up(t, size) for t in w) / len(w)
    _within(mean, wbar, abar)
    _within(base, _up(w[0], size), _up(a[0], size))

    # rows shared out over threads give the same bits as one thread
    threaded = compiled_products(xs, ys, size, totals=totals, threads=3)
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
        mean, _ = compiled_products(
            [one_hot], [_channels_last(g)], (1, 1), totals=totals.numpy()[None]
        )
        got.append(mean[0, 0])
    assert np.array_equal(np.array(got, dtype=np.float32), want.numpy())


def test_mismatched_stacks_are_refused() -> None:
    a = np.zeros((4, 4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="shapes differ"):
        compiled_products([a], [np.zeros((4, 5, 3), dtype=np.float32)], (8, 8))
    with pytest.raises(ValueError, match="C-contiguous float32"):
        compiled_products([a], [a.astype(np.float64)], (8, 8))


# --------------------------------------------------------------------------------------
# Compiled against torch on a real network, every depth


def test_compiled_fusion_equals_torch_fusion(mobilenet, three):
    """The CPU's compiled fusion against the torch fusion that accelerators run (here on the
    CPU): PHA, M_f, Holistic-CAM and CAMERAS at every depth, the summed shallow layer included."""
    x, targets = three
    layers = ["features.3.conv.0", "features.6.conv.0", "features.13.conv.0", "features.18"]

    def run(fusion: str) -> xr.Dataset:
        return holiwidget.explain(
            mobilenet,
            x[2:3],
            layers=layers,
            methods=("holistic", "cameras"),
            target=targets[2],
            fusion=fusion,
        )

    compiled = run("compiled")
    plain = run("torch")
    # two computations, not one: they differ by float rounding
    assert not np.array_equal(compiled.primary.values, plain.primary.values)
    for li in range(len(layers)):
        for var in ("primary", "fundamental"):
            ours, theirs = compiled[var].values[0, li], plain[var].values[0, li]
            assert rel_diff(ours, theirs) <= 1e-5, (layers[li], var, rel_diff(ours, theirs))
        maps = compiled.attribution.values[0, :, li], plain.attribution.values[0, :, li]
        diff = np.abs(maps[0] - maps[1])
        assert diff[0].mean() <= 1e-4 and diff[0].max() <= 0.02, (layers[li], diff[0].max())
        assert diff[1].max() <= 1e-4, (layers[li], diff[1].max())
