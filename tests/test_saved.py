"""What a pass saves for its backward: counted, or kept on disk, with identical results."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import holiwidget
from holiwidget import HoliwidgetError
from holiwidget.saved import MIN_BYTES, Counted, OnDisk, PassMemory


def _grads(model, x, saving=None):
    x = x.clone().requires_grad_(True)
    with saving if saving is not None else torch.enable_grad():
        y = model(x).square().sum()
        (g,) = torch.autograd.grad(y, x)
    return g


@pytest.mark.parametrize("channels_last", [False, True])
def test_on_disk_gives_the_same_gradients(tiny, channels_last) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 448, 448)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        tiny = tiny.to(memory_format=torch.channels_last)
    plain = _grads(tiny, x)
    disk = OnDisk()
    kept = _grads(tiny, x, disk)
    assert disk.bytes >= MIN_BYTES  # something really went to the file
    assert torch.equal(plain, kept)
    again = _grads(tiny, x, disk)  # the block may be entered again
    assert torch.equal(plain, again)


def test_counted_counts_what_autograd_saves(tiny) -> None:
    small, large = Counted(), Counted()
    _grads(tiny, torch.randn(1, 3, 64, 64), small)
    _grads(tiny, torch.randn(1, 3, 128, 128), large)
    assert small.bytes > 0
    assert 3.5 < large.bytes / small.bytes < 4.5  # 4 x the pixels


def test_pass_memory_moves_only_the_passes_over_budget() -> None:
    memory = PassMemory(budget=10 * 2**20)
    first = memory.saving(224 * 224)
    assert isinstance(first, Counted)
    first.bytes = 4 * 2**20  # as the fundamental pass would count
    assert memory.saving(324 * 324) is None  # 8.4 MB predicted
    assert isinstance(memory.saving(924 * 924), OnDisk)  # 68 MB predicted
    assert memory.on_disk == 1
    assert PassMemory(None).saving(924 * 924) is None


def test_explain_with_a_pass_budget_gives_identical_maps(tiny) -> None:
    # A budget makes "auto" take the torch fusion (it holds no natives): the same way here.
    kwargs = dict(layers="stage1,stage3", methods=("holistic", "gradcam", "cameras"))
    plain = holiwidget.explain(tiny, "astronaut", fusion="torch", **kwargs)
    low = holiwidget.explain(tiny, "astronaut", pass_memory=0.5, **kwargs)
    assert json.loads(low.attrs["parameters"])["passes_on_disk"] >= 1
    assert json.loads(plain.attrs["parameters"])["passes_on_disk"] == 0
    for name in ("attribution", "primary", "fundamental"):
        np.testing.assert_array_equal(low[name].values, plain[name].values)
    compiled = holiwidget.explain(tiny, "astronaut", fusion="compiled", **kwargs)
    np.testing.assert_allclose(low["primary"].values, compiled["primary"].values, atol=1e-5)


def test_a_bounded_heap_hands_freed_tensors_back() -> None:
    """bound_heap (what a pass budget turns on): freed large tensors leave the process.

    By default glibc raises its mmap threshold once a large block is freed, and later blocks
    of that size come from the heap, which keeps them after they are freed while anything
    above them lives (each in a fresh process: the setting is process-wide)."""
    code = (
        "import sys, torch\n"
        "from holiwidget.heap import bound_heap\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "if sys.argv[1] == 'bounded': bound_heap()\n"
        "first = torch.ones(6 * 2**20)\n"  # 24 MB, freed: raises glibc's threshold
        "del first\n"
        "before = rss()\n"
        "blocks, pins = [], []\n"
        "for _ in range(10):\n"  # 20 MB each, a live 200 kB tensor after each
        "    blocks.append(torch.ones(5 * 2**20)); pins.append(torch.ones(50_000))\n"
        "del blocks\n"
        "print(rss() - before)\n"
    )
    kept = {
        mode: int(
            subprocess.run(
                [sys.executable, "-c", code, mode], capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        )
        for mode in ("bounded", "default")
    }
    assert kept["bounded"] < 20 * 2**20 < 100 * 2**20 < kept["default"], kept


@pytest.mark.parametrize("bad", [0, -5, "64", True, float("nan")])
def test_bad_pass_memory_is_one_line(tiny, bad) -> None:
    with pytest.raises(HoliwidgetError, match="pass_memory must be a positive number") as err:
        holiwidget.explain(tiny, "astronaut", layers="stage3", pass_memory=bad)
    assert "\n" not in str(err.value)
