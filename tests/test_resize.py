"""Banded bilinear resizing and fused channel products against torch's own interpolation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from holiwidget.resize import bilinear_matrix, channel_products, resize_maps


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]


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
def test_channel_products_equal_naive_fusion(
    channels: int, sides: list, size: tuple[int, int]
) -> None:
    gen = torch.Generator().manual_seed(channels)
    shapes = [s if isinstance(s, tuple) else (s, s) for s in sides]
    w = [torch.rand(channels, *s, generator=gen) for s in shapes]
    a = [torch.rand(channels, *s, generator=gen) for s in shapes]
    g = [torch.randn(channels, *s, generator=gen) for s in shapes]
    fused, base = channel_products(
        {"w": w, "a": a, "g": g}, [("w", "a"), ("g", "a")], size, base_products=[("w", "a")]
    )
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
def test_channel_products_accept_channels_last_stacks(sides: list[int]) -> None:
    """Both fusion paths (fine stacks: tiled upsampling; coarse ones: Gram matrices)."""
    gen = torch.Generator().manual_seed(3)
    a = [torch.rand(1, 32, s, s, generator=gen) for s in sides]
    w = [torch.rand(1, 32, s, s, generator=gen) for s in sides]
    plain, plain_base = channel_products(
        {"w": [t[0] for t in w], "a": [t[0] for t in a]},
        [("w", "a")],
        (64, 64),
        base_products=[("w", "a")],
    )
    last = [t.contiguous(memory_format=torch.channels_last)[0] for t in (*w, *a)]
    assert not last[0].is_contiguous()
    ours, ours_base = channel_products(
        {"w": last[: len(sides)], "a": last[len(sides) :]},
        [("w", "a")],
        (64, 64),
        base_products=[("w", "a")],
    )
    assert torch.allclose(ours[("w", "a")], plain[("w", "a")], rtol=1e-5, atol=1e-6)
    assert torch.allclose(ours_base[("w", "a")], plain_base[("w", "a")], rtol=1e-5, atol=1e-6)
