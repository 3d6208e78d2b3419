"""Model-parameter randomisation test (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018), cascading from the output layer down.

Step 0 is the trained model. Step ``t`` re-initialises the parameters of the ``t`` groups
of modules nearest the output (groups: the modules that own parameters, gathered by the
first ``depth`` parts of their dotted names, ordered from the output down); every earlier
randomisation stays. After each step the same image is explained again (same layers,
methods and the trained model's class), and each map ``L_t`` is compared with the
original ``L_0``::

    spearman(t) = Spearman rank correlation of the pixels of L_t and L_0
                  (scipy.stats.spearmanr; NaN if either map is constant)
    ssim(t)     = SSIM(L_t, L_0), skimage.metrics.structural_similarity, data_range = 1

A faithful method's maps decorrelate as the weights are destroyed.

Re-initialisation uses each module's own ``reset_parameters()`` (PyTorch's default
initialisers; BatchNorm returns to weight 1, bias 0 and fresh running statistics), under a
seeded RNG; a module without one gets ``N(0, 0.02)`` weights. The model passed in is not
changed (a copy is randomised).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr
from matplotlib.figure import Figure
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from ..checks import positive_int
from ..engine import explain
from ..errors import HoliwidgetError
from ..images import ImageInput

__all__ = ["cascade_groups", "cascading_randomization", "plot_sanity", "randomize_group"]

log = logging.getLogger(__name__)


def cascade_groups(model: nn.Module, depth: int | None = 2) -> list[tuple[str, list[str]]]:
    """The randomisation steps: groups of parameterised modules, output first.

    Args:
        model: the network.
        depth: how many parts of a module's dotted name make its group (``features.18.conv``
            -> ``features.18`` at depth 2); None or 0: every module its own step.

    Returns:
        (group name, [module names]) from the output down (reverse registration order).
    """
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise HoliwidgetError(f"depth must be a non-negative integer or None, got {depth!r}")
    groups: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if not name or next(module.parameters(recurse=False), None) is None:
            continue
        key = ".".join(name.split(".")[:depth]) if depth else name
        groups.setdefault(key, []).append(name)
    if not groups:
        raise HoliwidgetError("the model has no parameters to randomise")
    return list(reversed(groups.items()))


def randomize_group(model: nn.Module, names: Sequence[str], seed: int) -> None:
    """Re-initialise the named modules' own parameters in place, reproducibly.

    Args:
        model: the network (changed in place).
        names: dotted module names.
        seed: the RNG seed for this group.
    """
    modules = dict(model.named_modules())
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for name in names:
            module = modules[name]
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
            else:
                for p in module.parameters(recurse=False):
                    p.normal_(0.0, 0.02)
            if isinstance(module, nn.modules.batchnorm._NormBase):
                module.reset_running_stats()


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def cascading_randomization(
    model: nn.Module,
    image: ImageInput | torch.Tensor,
    layers: str | Sequence[str] = "auto",
    methods: str | Sequence[str] = ("holistic",),
    *,
    target: int | None = None,
    depth: int | None = 2,
    steps: int | None = None,
    seed: int = 0,
    keep_maps: bool = False,
    device: str | torch.device = "auto",
    **explain_options: object,
) -> xr.Dataset:
    """Cascading parameter randomisation of a copy of the model, from the output down.

    Args:
        model: a torchvision-style classifier (not changed).
        image: one image (path, sample name, PIL image, array, or a (1, 3, H, W) /
            (3, H, W) normalised tensor).
        layers: layers to explain (as :func:`holiwidget.explain`).
        methods: methods to explain with (as :func:`holiwidget.explain`).
        target: the class to explain; None: the trained model's top-1 class (kept fixed
            for every step).
        depth: module-name parts that make a randomisation group (see
            :func:`cascade_groups`).
        steps: randomise only the first ``steps`` groups (default: all).
        seed: base seed; group ``t`` uses ``seed + t``.
        keep_maps: also return the maps of every step (``maps``: step, cam, layer, y, x).
        device: as :func:`holiwidget.explain`.
        **explain_options: passed to :func:`holiwidget.explain` (threshold, median, box).

    Returns:
        A dataset with ``spearman`` and ``ssim`` (step, cam, layer), coordinates ``step``
        (0 = the trained model), ``randomized`` (the group re-initialised at that step;
        ``""`` at step 0), ``cam`` and ``layer``; the target, seed and depth in ``attrs``.
    """
    if isinstance(image, torch.Tensor):
        if image.dim() == 4 and image.shape[0] != 1:
            raise HoliwidgetError(
                f"the sanity check takes one image, got a batch of {image.shape[0]}"
            )
        images: object = image if image.dim() == 4 else image.unsqueeze(0)
    elif isinstance(image, (list, tuple)):
        raise HoliwidgetError("the sanity check takes one image, not a list")
    else:
        images = [image]
    groups = cascade_groups(model, depth)
    if steps is not None:
        groups = groups[: positive_int(steps, "steps")]

    base = explain(
        model,
        images,
        layers=layers,
        methods=methods,
        target=target,
        device=device,
        **explain_options,
    )  # type: ignore[arg-type]
    cls = int(base.target.values[0])
    cams = [str(c) for c in base.cam.values]
    layer_names = [str(v) for v in base.layer.values]
    original = base.attribution.values[0]  # (cam, layer, y, x)
    shape = (len(groups) + 1, len(cams), len(layer_names))
    rho = np.full(shape, np.nan)
    sim = np.full(shape, np.nan)
    maps = [original] if keep_maps else []
    work = copy.deepcopy(model)
    for t in range(len(groups) + 1):
        if t == 0:
            current = original
        else:
            name, members = groups[t - 1]
            randomize_group(work, members, seed + t)
            log.info("step %d: randomised %s", t, name)
            current = explain(
                work,
                images,
                layers=layer_names,
                methods=cams,
                target=cls,
                device=device,
                **explain_options,  # type: ignore[arg-type]
            ).attribution.values[0]
            if keep_maps:
                maps.append(current)
        for ci in range(len(cams)):
            for li in range(len(layer_names)):
                a, b = original[ci, li], current[ci, li]
                rho[t, ci, li] = _spearman(a, b)
                sim[t, ci, li] = structural_similarity(a, b, data_range=1.0)
    ds = xr.Dataset(
        {
            "spearman": (("step", "cam", "layer"), rho),
            "ssim": (("step", "cam", "layer"), sim),
        },
        coords={
            "step": np.arange(len(groups) + 1),
            "randomized": ("step", ["", *[g[0] for g in groups]]),
            "cam": cams,
            "layer": layer_names,
        },
        attrs={
            "target": cls,
            "seed": seed,
            "depth": -1 if depth is None else depth,
            "groups": json.dumps({g[0]: g[1] for g in groups}),
            "description": "cascading model-parameter randomisation (Adebayo et al. 2018)",
        },
    )
    ds["spearman"].attrs["long_name"] = "Spearman rank correlation with the trained model's map"
    ds["ssim"].attrs["long_name"] = "SSIM with the trained model's map (data_range 1)"
    if keep_maps:
        ds["maps"] = (("step", "cam", "layer", "y", "x"), np.stack(maps).astype(np.float32))
    return ds


def plot_sanity(ds: xr.Dataset, metrics: Sequence[str] = ("spearman", "ssim")) -> Figure:
    """Plot a sanity-check dataset: one panel per metric and layer, one line per method.

    Args:
        ds: the output of :func:`cascading_randomization`.
        metrics: which variables to plot.

    Returns:
        A matplotlib Figure (object API; save it with ``fig.savefig(path)``).
    """
    missing = [m for m in metrics if m not in ds]
    if missing or not metrics:
        raise HoliwidgetError(
            f"the dataset lacks {', '.join(missing) or 'metrics'}; pass cascading_randomization's output"
        )
    layers = [str(v) for v in ds.layer.values]
    labels = ["trained", *[str(v) for v in ds.randomized.values[1:]]]
    fig = Figure(
        figsize=(max(4.0, 3.2 * len(layers)), 2.8 * len(metrics) + 0.8), layout="constrained"
    )
    axes = fig.subplots(len(metrics), len(layers), squeeze=False, sharex=True, sharey="row")
    for r, metric in enumerate(metrics):
        for c, layer in enumerate(layers):
            ax = axes[r][c]
            for cam in ds.cam.values:
                ax.plot(
                    ds.step.values,
                    ds[metric].sel(cam=cam, layer=layer).values,
                    marker="o",
                    markersize=3,
                    label=str(cam),
                )
            ax.axhline(0.0, color="0.7", linewidth=0.8)
            ax.set_title(f"{layer}", fontsize=9)
            if c == 0:
                ax.set_ylabel(metric)
            if r == len(metrics) - 1:
                ax.set_xticks(ds.step.values)
                ax.set_xticklabels(labels, rotation=90, fontsize=6)
                ax.set_xlabel("randomised from the output down")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Cascading randomisation, class {ds.attrs.get('target', '?')}")
    return fig
