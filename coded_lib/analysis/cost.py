"""T-cost: parameters, multiply-adds, training throughput and peak memory, Coded vs plain ResNeXt.

The paper reports GFLOPs with fvcore, which counts one multiply-add as one FLOP;
``torch.utils.flop_counter`` counts it as two, so its count is halved here. Only convolutions
and matrix products are counted (as in fvcore); the coded block's extra element-wise work is
3*N*C*H*W per block by the paper's formula (:func:`coded_flops_overhead`).
"""
from __future__ import annotations

import os
import time

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..models import count_parameters
from .inference import eval_mode


def _input(model, input_size, batch_size=1, device=None):
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (C, H, W), got {input_size!r}")
    p = next(model.parameters())
    return torch.randn(batch_size, *input_size, device=device or p.device, dtype=p.dtype)


def count_multiply_adds(model, input_size, batch_size: int = 1) -> float:
    """Multiply-adds per image of one forward pass (eval mode) on a batch of ``batch_size`` images
    of size (C, H, W): ``FlopCounterMode``'s count (convolutions and matrix products) / 2.

    Work that depends only on the weights (the coded blocks' Gram matrices W_n^T W_n of the
    energy, see coded_lib.models) is shared by the batch, so a larger batch lowers the count.
    """
    return multiply_adds_by_module(model, input_size, batch_size=batch_size)[""]


def fvcore_flops(model, input_size, batch_size: int = 1) -> float:
    """FLOPs per image as fvcore's default counter reports them for a model in training mode,
    the convention of the paper's T-cost: multiply-adds of convolutions and linear layers
    (:func:`count_multiply_adds`), plus 5 per element of every affine BatchNorm (4 without
    affine), plus one per input element of the final global average pool.

    For ResNeXt-50 at 160 px this gives the paper's 2.196 G.
    """
    norm, last = [], []
    hooks = [m.register_forward_hook(lambda m, a, out: norm.append((5 if m.affine else 4) * out.numel()))
             for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    blocks = getattr(model, "blocks", None)
    if blocks is not None and len(blocks):
        # the global average pool reads the last block's output
        hooks.append(blocks[-1].register_forward_hook(
            lambda m, a, out: last.append((out[0] if isinstance(out, tuple) else out).numel())))
    try:
        macs = count_multiply_adds(model, input_size, batch_size)
    finally:
        for h in hooks:
            h.remove()
    return macs + (sum(norm) + sum(last)) / batch_size


def coded_flops_overhead(model, input_size) -> int:
    """The paper's extra cost of the coded blocks: sum over coded blocks of 3*N*C*H*W, with
    (C, H, W) the block's output shape for one image of size ``input_size``."""
    shapes = []
    hooks = [b.register_forward_hook(lambda m, args, out: shapes.append((m.n, (out[0] if isinstance(out, tuple) else out).shape)))
             for b in model.coded_blocks]
    try:
        with eval_mode(model):
            model(_input(model, input_size))
    finally:
        for h in hooks:
            h.remove()
    return sum(3 * n * s[1] * s[2] * s[3] for n, s in shapes)


def _train_step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    out = model(x, targets=y)
    loss = F.cross_entropy(out.logits, y) + out.code_loss
    loss.backward()
    opt.step()


def _step_setup(model, input_size, batch_size, device):
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = _input(model, input_size, batch_size, device)
    y = torch.randint(0, model.num_classes, (batch_size,), device=device)
    return opt, x, y


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def training_throughput(model, input_size, batch_size=32, steps=5, warmup=1, device="cpu") -> float:
    """Images per second of full training steps (forward, CE + coding loss, backward, SGD step)
    on random data. The model's weights change: pass a copy if they matter."""
    opt, x, y = _step_setup(model, input_size, batch_size, device)
    for _ in range(warmup):
        _train_step(model, opt, x, y)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        _train_step(model, opt, x, y)
    _sync(device)
    return steps * batch_size / (time.perf_counter() - t0)


def peak_training_memory(model, input_size, batch_size=32, device="cpu") -> int:
    """Peak bytes held by tensors during one training step (after one warm-up step, so the
    optimizer state exists), parameters, gradients and optimizer state included.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the allocation and free events recorded by
    ``torch.profiler`` (profile_memory=True), accumulated in time order, on top of the tensors
    alive before the step (parameters, buffers, gradients, optimizer state, the batch).
    """
    opt, x, y = _step_setup(model, input_size, batch_size, device)
    _train_step(model, opt, x, y)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        _train_step(model, opt, x, y)
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev))
    if dev.type != "cpu":
        raise ValueError(f"peak memory is measured on 'cpu' or 'cuda' devices, got {device!r}")
    resident = {id(t): t for t in [*model.parameters(), *model.buffers(), x, y]}
    for p in model.parameters():
        if p.grad is not None:
            resident[id(p.grad)] = p.grad
    for state in opt.state.values():
        for t in state.values():
            if torch.is_tensor(t):
                resident[id(t)] = t
    base = sum(t.untyped_storage().nbytes() for t in resident.values())
    # Kineto logs a spurious "gpuGetDeviceCount failed" error on CUDA builds without a GPU
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        _train_step(model, opt, x, y)
    # The raw Kineto events keep every allocation and free ("[memory]", signed nbytes) with its
    # time; prof.events() folds most of them into the ops that made them.
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return base + peak


def cost_table(models: dict, input_size, batch_size=32, steps=5, device="cpu") -> pd.DataFrame:
    """T-cost for several models (name -> model), one row each:

    params_m (millions); gmacs (multiply-adds per image, forward, :func:`count_multiply_adds`);
    gflops_fvcore (the paper's convention, :func:`fvcore_flops`); overhead_gflops (the paper's
    3*N*C*H*W over the coded blocks, 0 for plain models); images_per_s (training steps);
    peak_mem_mb (one training step). Every count uses batches of ``batch_size``; the models'
    weights, BN statistics and mode are restored afterwards.
    """
    rows = []
    for name, model in models.items():
        # the training steps change weights, BN statistics and the mode: put them all back after
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        was_training = model.training
        rows.append({
            "model": name,
            "params_m": count_parameters(model) / 1e6,
            "gmacs": count_multiply_adds(model, input_size, batch_size) / 1e9,
            "gflops_fvcore": fvcore_flops(model, input_size, batch_size) / 1e9,
            "overhead_gflops": coded_flops_overhead(model, input_size) / 1e9,
            "images_per_s": training_throughput(model, input_size, batch_size, steps, device=device),
            "peak_mem_mb": peak_training_memory(model, input_size, batch_size, device) / 2**20,
        })
        model.load_state_dict(saved)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return pd.DataFrame(rows)


def multiply_adds_by_module(model, input_size, skip_zero_weights: bool = False, batch_size: int = 1) -> dict[str, float]:
    """Multiply-adds per image of one forward pass (eval mode, a batch of ``batch_size`` images) by
    module name ("" for the whole model, "stem", "blocks.3", "blocks.3.conv1", ...), from
    ``FlopCounterMode``'s per-module counts / 2 / batch_size. A module's count includes its children's.

    ``skip_zero_weights``: weights that are exactly zero cost nothing (a structurally sparse network
    such as IS-ResNeXt's thin sub-networks, whose masked convolutions would run as grouped or
    block-sparse ones): each convolution or linear layer without children is counted times the
    fraction of its weight that is non-zero, and the totals of its parents are rebuilt from those.
    """
    x = _input(model, input_size, batch_size)
    with eval_mode(model), FlopCounterMode(display=False) as counter:
        model(x)
    counts = {}
    for key, ops in counter.get_flop_counts().items():
        if key == "Global":
            continue
        name = key.split(".", 1)[1] if "." in key else ""  # keys are "<class name>.<module name>"
        counts[name] = sum(ops.values()) / 2 / batch_size
    if skip_zero_weights:
        for name in list(counts):
            module = model.get_submodule(name)
            if isinstance(module, (nn.Conv2d, nn.Linear)) and not list(module.children()):
                zeros = int((module.weight == 0).sum())
                saved = counts[name] * zeros / module.weight.numel()
                for parent in [n for n in counts if n in ("", name) or name.startswith(n + ".")]:
                    counts[parent] -= saved
    return counts
