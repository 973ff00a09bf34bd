"""Checkpoints that survive being killed, and the random states that make a resume exact.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then renamed
over the old one: a rename within one file system is atomic, so a kill at any moment leaves
either the old or the new checkpoint, never a torn one. Everything in it is a tensor or a plain
Python container, so ``torch.load(path, weights_only=True)`` reads it.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, os.replace, fsync of the folder)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    # the rename itself is only durable once the folder's entry is on disk
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint on the CPU (tensors and containers only: ``weights_only=True``)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def to_cpu(obj):
    """A copy of nested dicts/lists/tuples with every tensor moved to the CPU (for saving from GPU/XLA)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def rng_state(generator: torch.Generator | None = None) -> dict:
    """The states of torch (CPU and CUDA), numpy, Python's random and ``generator``, as tensors."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor(list(mt), dtype=torch.int64),
        "python_version": torch.tensor(version),
        # Python's cached Gaussian: absent (nan) or a float
        "python_gauss": torch.tensor(float("nan") if gauss is None else gauss, dtype=torch.float64),
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": torch.tensor(pos),
        "numpy_gauss": torch.tensor([float(has_gauss), cached], dtype=torch.float64),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    gauss = float(state["python_gauss"])
    random.setstate((int(state["python_version"]), tuple(int(x) for x in state["python"]),
                     None if np.isnan(gauss) else gauss))
    has_gauss, cached = state["numpy_gauss"].tolist()
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"]),
                         int(has_gauss), cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])
