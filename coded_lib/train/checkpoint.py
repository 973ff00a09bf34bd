"""Checkpoints that survive being killed, and the random states that make a resume exact.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then renamed
over the old one: a rename within one file system is atomic, so a kill at any moment leaves
either the old or the new checkpoint, never a torn one. The checkpoint it replaces is kept as
``<name>.prev.pt``, and every checkpoint carries a SHA-256 of its own contents: a damaged one
(a bad disk, a truncated copy, a file that is not a checkpoint) is reported with its path and
:func:`load_latest` falls back to the previous one, so a run never silently restarts from
scratch. Everything in a checkpoint is a tensor or a plain Python container, so
``torch.load(path, weights_only=True)`` reads it.
"""
from __future__ import annotations

import hashlib
import io
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

DIGEST = "sha256"  # key of the checksum inside a checkpoint
# Test hook (tests/test_fault_injection.py): seconds to pause in the middle of every checkpoint
# write, so that a test can kill the process while a write is under way.
SLOW_WRITE_ENV = "CODED_TEST_SLOW_CHECKPOINT"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: unreadable, truncated, altered, or not a checkpoint."""


def _digest(state) -> str:
    """SHA-256 of the contents of nested dicts/lists/tuples of tensors and plain values, in order."""
    h = hashlib.sha256()

    def walk(obj):
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(obj, dict):
            h.update(f"D{len(obj)}".encode())
            for k, v in obj.items():
                h.update(repr(k).encode())
                walk(v)
        elif isinstance(obj, (list, tuple)):
            h.update(f"L{len(obj)}".encode())
            for v in obj:
                walk(v)
        else:  # str, int, float (repr round-trips), bool, None
            h.update(f"{type(obj).__name__}:{obj!r}".encode())

    walk(state)
    return h.hexdigest()


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint that ``path`` replaced is kept: checkpoint.pt -> checkpoint.prev.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _fsync_dir(folder: Path) -> None:
    # a rename is only durable once the folder's entry is on disk
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` and its checksum to ``path`` atomically, keeping the old file as ``previous_path(path)``.

    Order: temporary file, fsync, old checkpoint renamed to .prev.pt, temporary file renamed to
    ``path``. A kill between the two renames leaves no ``path`` but an intact .prev.pt, which
    :func:`load_latest` then reads.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    state = {**state, DIGEST: _digest(state)}
    pause = float(os.environ.get(SLOW_WRITE_ENV) or 0)
    with open(tmp, "wb") as f:
        if pause:
            buf = io.BytesIO()
            torch.save(state, buf)
            data = buf.getvalue()
            f.write(data[:len(data) // 2])
            f.flush()
            print(f"checkpoint write paused: {tmp}", file=sys.stderr, flush=True)
            time.sleep(pause)
            f.write(data[len(data) // 2:])
        else:
            torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    if path.exists():
        os.replace(path, previous_path(path))
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def load_checkpoint(path: str | os.PathLike, required=()) -> dict:
    """Read a checkpoint on the CPU (tensors and containers only: ``weights_only=True``) and verify it.

    Raises :class:`CheckpointError` naming the file when it cannot be read, when its checksum does
    not match its contents, or when it lacks one of the ``required`` keys. Checkpoints written
    before checksums existed are read without the check.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch reports a torn zip or random bytes in many ways
        raise CheckpointError(f"{path} is damaged: torch.load fails ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a checkpoint: it holds a {type(state).__name__}, not a dict")
    saved = state.pop(DIGEST, None)
    if saved is not None and saved != _digest(state):
        raise CheckpointError(f"{path} is damaged: its contents do not match their SHA-256")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a training checkpoint of coded_lib.train: it lacks {missing} "
                              f"(it has {sorted(map(str, state))[:8]})")
    return state


def load_latest(path: str | os.PathLike, required=()) -> dict | None:
    """The newest usable checkpoint at ``path``, else the one it replaced; None if there is neither.

    A damaged ``path`` is reported on stderr, renamed to ``<name>.damaged`` (kept for inspection,
    and so that the next save does not take it for the previous good checkpoint), and the
    previous checkpoint is used. Raises :class:`CheckpointError` when checkpoints exist but none
    can be used: a run then never restarts from scratch on its own.
    """
    path = Path(path)
    prev = previous_path(path)
    errors = []
    for p in (path, prev):
        if not p.exists():
            continue
        try:
            state = load_checkpoint(p, required)
        except CheckpointError as e:
            errors.append(str(e))
            continue
        if p == prev:
            if errors:
                os.replace(path, path.with_name(path.name + ".damaged"))
                print(f"warning: {errors[0]}; it is kept as {path.name}.damaged and the run goes on from "
                      f"the previous checkpoint {prev} (epoch {state.get('epoch')})", file=sys.stderr)
            os.replace(prev, path)  # the previous checkpoint becomes the current one again
        return state
    if errors:
        raise CheckpointError("; ".join(errors) + ". No usable checkpoint is left: delete the run folder "
                              "(or these files) to start the run over")
    return None


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
