"""Class distances from a trained network, for the semantic coding schemes of coded_lib.beyond.semantic."""
from __future__ import annotations

import numpy as np
import torch

from .inference import _batches, eval_mode

KINDS = ("features", "confusion")


def class_distances(model, loader, kind: str = "features", device="cpu") -> np.ndarray:
    """K×K distances between the classes as ``model`` sees them on ``loader``.

    ``kind="features"``: Euclidean distances between the class means of the pooled features (the
    input of the final linear layer); ``"confusion"``: 1 - (P(j | i) + P(i | j)) / 2 from the
    row-normalized confusion matrix, so classes the network confuses are close. Zero diagonal.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; allowed: {KINDS}")
    K = model.num_classes
    sums, counts, confusion = None, torch.zeros(K), torch.zeros(K, K)
    pooled = []
    hook = model.head.register_forward_hook(lambda m, args, out: pooled.append(args[0].float().cpu()))
    try:
        with eval_mode(model):
            model.to(device)
            for x, y in _batches(loader, device):
                pooled.clear()
                logits = model(x).logits.float().cpu()
                y = y.cpu()
                f = pooled[0]
                sums = torch.zeros(K, f.shape[1]) if sums is None else sums
                sums.index_add_(0, y, f)
                counts += torch.bincount(y, minlength=K)
                confusion += torch.bincount(y * K + logits.argmax(1), minlength=K * K).view(K, K).float()
    finally:
        hook.remove()
    if (counts == 0).any():
        raise ValueError(f"classes {torch.nonzero(counts == 0).flatten().tolist()} have no sample in the loader")
    if kind == "features":
        means = sums / counts[:, None]
        d = torch.cdist(means, means).numpy().astype(float)
    else:
        p = (confusion / counts[:, None]).numpy().astype(float)
        d = 1 - (p + p.T) / 2
    np.fill_diagonal(d, 0.0)
    return (d + d.T) / 2
