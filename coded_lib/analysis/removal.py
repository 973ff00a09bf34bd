"""F-removal: accuracy when k active or k inactive subNNs of one coded block are removed.

For each validation sample, k subNNs are drawn at random from the active (or inactive) set of
its true class in the chosen block and zeroed before the energy normalization (SPEC §3).
Removing active subNNs should hurt, the more the worse; removing inactive ones should not.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import decoders
from .inference import collect

KINDS = ("active", "inactive")


def _accuracy(model, loader, device, mask_fn=None) -> float:
    out = collect(model, loader, device, mask_fn)
    return float((out["preds"] == out["targets"]).float().mean())


def removal_curve(model, loader, block: int, repeats: int = 3, kinds=KINDS, device="cpu", seed: int = 0) -> pd.DataFrame:
    """Accuracy of ``model`` on ``loader`` with k subNNs of coded block ``block`` removed.

    For each kind ("active", "inactive") and k = 0 .. (N_act or N - N_act), the removal draws
    are repeated ``repeats`` times with different random subNNs per sample. Returns a DataFrame
    with columns block, kind, k, accuracy (mean over repeats), std (sample std over repeats;
    0 for k = 0, which removes nothing and is evaluated once, and when repeats = 1).
    """
    if not model.coded_blocks:
        raise ValueError("a plain ResNeXt has no coded block: removal needs a Coded ResNeXt")
    if not 0 <= block < len(model.coded_blocks):
        raise ValueError(f"block={block}; this model has coded blocks 0..{len(model.coded_blocks) - 1}")
    if repeats < 1:
        raise ValueError(f"repeats={repeats}; need at least 1")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"kinds {bad} not allowed; allowed: {KINDS}")
    b = model.coded_blocks[block]
    gen = torch.Generator().manual_seed(seed)
    base = _accuracy(model, loader, device)
    rows = []
    for kind in kinds:
        rows.append({"block": block, "kind": kind, "k": 0, "accuracy": base, "std": 0.0})
        k_max = b.n_act if kind == "active" else b.n - b.n_act
        for k in range(1, k_max + 1):
            def mask_fn(x, y, k=k, kind=kind):
                return decoders.removal_mask(model, y, block, k, kind, generator=gen)
            accs = [_accuracy(model, loader, device, mask_fn) for _ in range(repeats)]
            std = float(np.std(accs, ddof=1)) if repeats > 1 else 0.0
            rows.append({"block": block, "kind": kind, "k": k, "accuracy": float(np.mean(accs)), "std": std})
    return pd.DataFrame(rows)


def removal_curves(model, loader, blocks=None, repeats: int = 3, kinds=KINDS, device="cpu", seed: int = 0) -> pd.DataFrame:
    """:func:`removal_curve` for several coded blocks (all of them when ``blocks`` is None), stacked."""
    if blocks is None:
        blocks = range(len(model.coded_blocks))
    return pd.concat([removal_curve(model, loader, b, repeats, kinds, device, seed + b) for b in blocks],
                     ignore_index=True)


def removal_pairs(model, loader, block: int, device="cpu", seed: int = 0) -> dict:
    """Per-image correctness (bool arrays over ``loader``'s images, in order) of the intact model and of
    the model with k active or k inactive subNNs of ``block`` removed (one random draw per image), for every
    k: ``{"intact": ..., ("active", 1): ..., ("inactive", 1): ..., ...}``. The same images with and without
    the removal, for a paired comparison (``coded_lib.analysis.stats.paired``)."""
    if not 0 <= block < len(model.coded_blocks):
        raise ValueError(f"block={block}; this model has coded blocks 0..{len(model.coded_blocks) - 1}")
    b = model.coded_blocks[block]
    gen = torch.Generator().manual_seed(seed)

    def correct(mask_fn=None):
        out = collect(model, loader, device, mask_fn)
        return (out["preds"] == out["targets"]).numpy()

    pairs = {"intact": correct()}
    for kind in KINDS:
        for k in range(1, (b.n_act if kind == "active" else b.n - b.n_act) + 1):
            pairs[(kind, k)] = correct(lambda x, y, k=k, kind=kind: decoders.removal_mask(model, y, block, k, kind,
                                                                                           generator=gen))
    return pairs


def removal_gaps(curves: pd.DataFrame) -> dict[int, float]:
    """Per block of ``curves`` (:func:`removal_curves`): the mean accuracy with k inactive subNNs
    removed minus with k active ones removed, over k = 1 .. min(N_act, N - N_act) (the k both
    curves have). Large when the block's class information sits in its active subNNs."""
    acc = curves.set_index(["block", "kind", "k"]).accuracy
    gaps = {}
    for b in curves.block.unique():
        k_max = min(acc[(b, "active")].index.max(), acc[(b, "inactive")].index.max())
        gaps[int(b)] = float(acc[(b, "inactive")].loc[1:k_max].mean() - acc[(b, "active")].loc[1:k_max].mean())
    return gaps


def removal_table(curves: pd.DataFrame) -> pd.DataFrame:
    """:func:`removal_curves` as a table to read: accuracy (%) per coded block (numbered from 1, as
    the chapters name them) and k, one column per kind; "–" where a block has fewer than k subNNs
    of that kind (k > N_act for active ones), so that no cell reads as a missing measurement."""
    table = curves.assign(block=curves.block + 1, accuracy=(100 * curves.accuracy).round(1)).pivot(
        index=["block", "k"], columns="kind", values="accuracy")
    table.index.names, table.columns.name = ["coded block", "k removed"], None
    return table.astype(object).where(table.notna(), "–")
