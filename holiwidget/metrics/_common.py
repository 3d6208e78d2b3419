"""Input checks and batched, gradient-free model evaluation shared by the metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..capture import prepared
from ..checks import class_indices, finite_logits, positive_int
from ..devices import resolve_device
from ..errors import HoliwidgetError

__all__ = [
    "Evaluator",
    "MapsLike",
    "TargetLike",
    "as_images",
    "as_maps",
    "as_targets",
    "evaluation",
]

MapsLike = torch.Tensor | np.ndarray
TargetLike = int | Sequence[int] | np.ndarray | torch.Tensor | None

# Images per forward pass: small batches run fastest on a CPU (cache), large ones on a GPU.
_BATCH = {"cpu": 8, "default": 64}


def as_images(images: torch.Tensor) -> torch.Tensor:
    """A normalised image tensor (3, H, W) or (N, 3, H, W) as float32 (N, 3, H, W)."""
    if not isinstance(images, torch.Tensor):
        raise HoliwidgetError(
            f"images must be a normalised tensor (3, H, W) or (N, 3, H, W), got "
            f"{type(images).__name__}; use holiwidget.images.prepare_images(...).tensor"
        )
    x = images.detach()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[0] == 0:
        raise HoliwidgetError(
            f"images must be (3, H, W) or (N, 3, H, W) with N >= 1, got {tuple(images.shape)}"
        )
    if not torch.is_floating_point(x) or not torch.isfinite(x).all():
        raise HoliwidgetError("images must be finite floating-point tensors (ImageNet-normalised)")
    return x.float()


def as_maps(maps: MapsLike, images: torch.Tensor) -> torch.Tensor:
    """Saliency maps (H, W) or (M, H, W) matching the images' size, as float32 (M, H, W)."""
    if isinstance(maps, np.ndarray):
        if not np.issubdtype(maps.dtype, np.number) or maps.dtype == bool:
            raise HoliwidgetError(f"maps must be numeric, got dtype {maps.dtype}")
        m = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
    elif isinstance(maps, torch.Tensor):
        m = maps.detach().float().cpu()
    else:
        raise HoliwidgetError(
            f"maps must be a torch tensor or numpy array (M, H, W), got {type(maps).__name__}"
        )
    if m.dim() == 2:
        m = m.unsqueeze(0)
    size = tuple(images.shape[-2:])
    if m.dim() != 3 or tuple(m.shape[-2:]) != size or m.shape[0] == 0:
        raise HoliwidgetError(
            f"maps of shape {tuple(maps.shape)} do not match the images' {size[0]}x{size[1]}; "
            f"give (H, W) or (M, H, W) maps at the input size"
        )
    if not torch.isfinite(m).all():
        raise HoliwidgetError("maps contain NaN or infinite values; clean them first")
    n_img, n_map = images.shape[0], m.shape[0]
    if n_img not in (1, n_map) and n_map != 1:
        raise HoliwidgetError(
            f"{n_map} maps for {n_img} images; give one map per image, one image, or one map"
        )
    return m.contiguous()


def pair_count(images: torch.Tensor, maps: torch.Tensor) -> int:
    """How many (image, map) pairs the broadcast of images and maps makes."""
    return max(images.shape[0], maps.shape[0])


def pick(t: torch.Tensor, i: int) -> torch.Tensor:
    """Element i of a batch that broadcasts (size 1 repeats)."""
    return t[0] if t.shape[0] == 1 else t[i]


def as_targets(target: TargetLike, count: int) -> torch.Tensor | None:
    """One class index per pair, or None for the top-1 class of each image.

    One index (an integer, a numpy integer, a 0-d tensor) or a sequence of one serves every
    pair; floats, strings and booleans are refused (see :func:`holiwidget.checks.class_indices`).
    """
    if target is None:
        return None
    values = class_indices(target, "target")
    if isinstance(values, int):
        values = [values]
    if len(values) == 1 and count > 1:
        values = values * count
    if len(values) != count:
        raise HoliwidgetError(f"{len(values)} targets for {count} maps; give one per map or one")
    if min(values) < 0:
        raise HoliwidgetError(f"targets must be non-negative class indices, got {min(values)}")
    return torch.tensor(values, dtype=torch.long)


class Evaluator:
    """Softmax probabilities of chosen classes for batches of images, without gradients."""

    def __init__(self, model: nn.Module, device: torch.device, batch_size: int) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.classes: int | None = None

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes) of a batch; input channels-last (faster on oneDNN and cuDNN)."""
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        out = self.model(x)
        if out.dim() != 2:
            raise HoliwidgetError(
                f"the model returned shape {tuple(out.shape)}; metrics need logits (N, classes)"
            )
        finite_logits(out)
        self.classes = out.shape[1]
        return out

    def check(self, targets: torch.Tensor) -> None:
        """A one-line error if a target is outside the classes of the logits seen last."""
        if self.classes is not None and int(targets.max()) >= self.classes:
            raise HoliwidgetError(
                f"target {int(targets.max())} is outside the model's {self.classes} classes"
            )

    def probabilities(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """p_c = softmax(logits)[c] for each row of x and its target, on the CPU (float32)."""
        logits = self.logits(x)
        self.check(targets)
        probs = torch.softmax(logits.float(), dim=1)
        return probs.gather(1, targets.to(probs.device)[:, None])[:, 0].cpu()

    def top1(self, x: torch.Tensor) -> torch.Tensor:
        """The top-1 class of each image of x, (N,) int64 on the CPU, in batches."""
        out = []
        for i in range(0, x.shape[0], self.batch_size):
            out.append(self.logits(x[i : i + self.batch_size]).argmax(1).cpu())
        return torch.cat(out)

    def top1_targets(self, x: torch.Tensor, count: int) -> torch.Tensor:
        """The targets when none are given: each image's top-1 class, one per (image, map)
        pair (one image's class repeated for all of its ``count`` maps)."""
        top = self.top1(x)
        return top if top.numel() == count else top.expand(count).clone()


@contextlib.contextmanager
def evaluation(
    model: nn.Module, device: str | torch.device, batch_size: int | None
) -> Iterator[Evaluator]:
    """The model on the device, in evaluation mode with frozen parameters, under no_grad;
    all put back afterwards."""
    dev = resolve_device(device)
    if batch_size is not None:
        batch_size = positive_int(batch_size, "batch_size")
    size = batch_size or _BATCH.get(dev.type, _BATCH["default"])
    with prepared(model, dev), torch.no_grad():
        yield Evaluator(model, dev, size)
