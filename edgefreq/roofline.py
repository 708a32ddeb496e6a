"""The physical limit of a model on a device (roofline): what no engine can beat.

    cost = model_cost(model, in_channels=3, size=(128, 128), levels=2)    # per frame, counted
    peaks = measure_peaks("cpu")                                          # measured on this machine
    floor_ms, bound = peaks.floor_ms(cost, batch=8)                       # max(FLOPs/peak, bytes/bandwidth)

FLOPs: edgefreq.models.flops (2 x the multiply-accumulates of every conv, transposed conv and
linear layer that model.score runs; BatchNorm, activations and the map smoothing are not counted).

Bytes: the fewest a float32 engine must move through device memory for one batch of B frames,

    weights      the conv / transposed conv / linear weights and biases that score runs, each read
                 ONCE PER BATCH (BatchNorm folds into the conv before it in every engine, so its
                 parameters are not counted; the discriminator runs twice on the same weights)
    inputs       the `levels` band tensors, read once per frame
    outputs      score and anomaly map, written once per frame
    activations  the output of every conv / transposed conv / linear call, written once and read
                 once per frame (2 x its size): engines run each of these layers as its own kernel,
                 fusing BatchNorm, the activation and concatenation into it, so what passes from
                 one layer to the next goes through memory. Elementwise tails (the error, its mean,
                 the map) fuse into their producer and are not counted. On a CPU, small activations
                 stay in cache, so this term can overstate the DRAM traffic; `compulsory_bytes`
                 (weights + inputs + outputs) is the strict lower bound, and both are reported.

Peaks: measured, never taken from a datasheet. Rate: the median of a large float32 matrix product
(torch.matmul; on CUDA the faster of strict fp32 and TF32, since convolutions may run in TF32 by
default in cuDNN and TensorRT). Bandwidth: a large tensor copy, counting bytes read plus bytes
written. Both timed with edgefreq.runtime.bench.Timer (CUDA events on a GPU, perf_counter on the
CPU), median of `reps` after warm-up, with torch's current thread count on the CPU.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from torch import nn

from edgefreq.models import flops as model_flops
from edgefreq.runtime.bench import Timer

LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


@dataclass(frozen=True)
class ModelCost:
    """What one frame costs (FLOPs, bytes) and what a batch shares (weight bytes)."""

    flops: int  # per frame
    weight_bytes: int  # per batch: read once
    input_bytes: int  # per frame
    output_bytes: int  # per frame
    activation_bytes: int  # per frame: each layer output written once and read once

    def batch_flops(self, batch: int) -> int:
        return self.flops * batch

    def compulsory_bytes(self, batch: int) -> int:
        """Weights once, inputs and outputs of every frame: the strict lower bound."""
        return self.weight_bytes + batch * (self.input_bytes + self.output_bytes)

    def batch_bytes(self, batch: int) -> int:
        """Compulsory bytes plus the activations that pass between layer kernels."""
        return self.compulsory_bytes(batch) + batch * self.activation_bytes


def model_cost(model: nn.Module, in_channels: int, size: int | tuple[int, int], levels: int, dtype_bytes: int = 4) -> ModelCost:
    """Count model.score on one frame (see the module docstring for what is counted)."""
    size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    param = next(model.parameters())
    used: dict[int, nn.Module] = {}
    activations = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal activations
        used[id(module)] = module
        activations += 2 * output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, LAYERS)]
    was_training = model.training
    bands = [torch.zeros(1, in_channels, *size, device=param.device, dtype=param.dtype) for _ in range(levels)]
    try:
        model.eval()
        with torch.no_grad():
            score, amap = model.score(bands)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    weights = sum(p.numel() for m in used.values() for p in m.parameters(recurse=False))
    return ModelCost(
        flops=model_flops(model, in_channels, size, levels),
        weight_bytes=weights * dtype_bytes,
        input_bytes=levels * in_channels * size[0] * size[1] * dtype_bytes,
        output_bytes=(score.numel() + amap.numel()) * dtype_bytes,
        activation_bytes=activations * dtype_bytes,
    )


@dataclass(frozen=True)
class Peaks:
    """A device's measured ceilings and how they were measured."""

    flops_per_s: float
    bytes_per_s: float
    device: str
    how: str

    def floor_ms(self, cost: ModelCost, batch: int, activations: bool = True) -> tuple[float, str]:
        """(the least time for one batch in ms, "compute" or "memory": which term sets it)."""
        moved = cost.batch_bytes(batch) if activations else cost.compulsory_bytes(batch)
        compute = cost.batch_flops(batch) / self.flops_per_s
        memory = moved / self.bytes_per_s
        return 1000.0 * max(compute, memory), "compute" if compute >= memory else "memory"


def _matmul_rate(timer: Timer, n: int, reps: int, tf32: bool) -> float:
    """FLOP/s of an n x n float32 matrix product (random operands, never zeros)."""
    gen = torch.Generator(device=timer.device).manual_seed(0)
    a = torch.randn(n, n, device=timer.device, generator=gen)
    b = torch.randn(n, n, device=timer.device, generator=gen)
    out = torch.empty(n, n, device=timer.device)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        ms = statistics.median(timer.samples(lambda: torch.matmul(a, b, out=out), reps, 2))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return 2 * n**3 / (ms / 1000.0)


def _copy_bandwidth(timer: Timer, mib: int, reps: int) -> float:
    """Bytes read + bytes written per second by a copy of `mib` MiB."""
    gen = torch.Generator(device=timer.device).manual_seed(1)
    src = torch.randn(mib * 2**18, device=timer.device, generator=gen)  # mib MiB of float32
    dst = torch.empty_like(src)
    ms = statistics.median(timer.samples(lambda: dst.copy_(src), reps, 2))
    return 2 * src.numel() * 4 / (ms / 1000.0)


def measure_peaks(device: str | torch.device = "cpu", matmul_n: int | None = None, copy_mib: int | None = None, reps: int = 10) -> Peaks:
    """This device's float32 matmul rate and copy bandwidth (defaults: n 2048 / 256 MiB on the
    CPU, n 8192 / 1024 MiB on CUDA: large enough to leave the caches and fill the chip)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    cuda = device.type == "cuda"
    n = matmul_n or (8192 if cuda else 2048)
    mib = copy_mib or (1024 if cuda else 256)
    timer = Timer(device)
    rates = {("tf32" if tf32 else "fp32"): _matmul_rate(timer, n, reps, tf32) for tf32 in ((False, True) if cuda else (False,))}
    bandwidth = _copy_bandwidth(timer, mib, reps)
    best = max(rates, key=rates.get)
    threads = "" if cuda else f", {torch.get_num_threads()} torch thread(s)"
    rate_text = ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in rates.items())
    how = (f"float32 matmul {n}x{n} ({rate_text}; peak = {best}); copy of {mib} MiB, read + write "
           f"{bandwidth / 1e9:.1f} GB/s; {timer.name}, median of {reps}{threads}")
    return Peaks(rates[best], bandwidth, str(device), how)
