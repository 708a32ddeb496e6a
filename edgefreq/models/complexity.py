"""Model size and cost: parameter count and FLOPs of the score pass (what the engine runs)."""

from __future__ import annotations

import torch
from torch import nn

from .base import AnomalyModel


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """Multiply-accumulates of one conv / transposed conv / linear call."""
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        return output.numel() * k
    if isinstance(module, nn.ConvTranspose2d):
        k = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        return inputs[0].numel() * k
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def flops(model: AnomalyModel, in_channels: int, size: int | tuple[int, int], levels: int) -> int:
    """FLOPs (= 2 x MACs) of model.score on ONE frame: conv, transposed conv and linear layers,
    counted with forward hooks; BatchNorm, activations and the map smoothing are not counted."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += _macs(module, inputs, output)

    leaves = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    param = next(model.parameters())
    bands = [torch.zeros(1, in_channels, *size, device=param.device, dtype=param.dtype) for _ in range(levels)]
    try:
        model.eval()
        with torch.no_grad():
            model.score(bands)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return 2 * total
