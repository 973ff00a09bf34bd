"""A linear classifier on the same images: the yardstick for "is this network trained enough to judge".

The book's claims are about networks that beat simple baselines by far. A verdict from a network that
does not even reach multinomial logistic regression on its own training images says more about the
training budget than about the method, so the claims functions read such a verdict as "inconclusive at
this scale" (``coded_lib.companion.claims.at_this_scale``). The reference is scikit-learn's
``LogisticRegression`` (L2, C = 1, lbfgs) on the pixels scaled to [0, 1], fitted on the run's training
images without augmentation and scored on its validation images, the images the network is scored on.
"""
import json
import os
import tempfile
from pathlib import Path

import numpy as np

CACHE_FILE = "linear_reference.json"  # in the runs folder: every chapter of an edition reads one fit


def _pixels(ds, mean, std) -> tuple[np.ndarray, np.ndarray]:
    """A data set's evaluation tensors back to their 8-bit pixels / 255 (undoing the normalization), flattened."""
    import torch

    x, y = zip(*(ds[i] for i in range(len(ds))))
    x = torch.stack(x).double() * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    return (x * 255).round().flatten(1).numpy() / 255, np.asarray(y)  # the stored 8-bit pixels, exactly


def data_key(cfg) -> str:
    """What the reference depends on: the data set and which of its images the run trains and is scored on."""
    return (f"{cfg.dataset}: train_subset {cfg.train_subset}, val_subset {cfg.val_subset}, seed {cfg.seed}, "
            f"eval_size {cfg.eval_size}")


def linear_accuracy(cfg, cache_dir=None) -> float | None:
    """Validation accuracy (a fraction) of logistic regression trained on the run's training images (Config
    ``cfg``: data set, ``train_subset`` drawn with ``seed``, ``val_subset``); None on ImageNet, where 150,528
    pixels an image make it a day's fit and the paper's networks are far above it. Fitted once per data and
    kept in ``<cache_dir>/linear_reference.json`` (default: the runs folder)."""
    from sklearn.linear_model import LogisticRegression

    from ..train.data import INFO, get_datasets
    from ..train.loop import runs_root

    if cfg.dataset == "imagenet":
        return None
    path = Path(cache_dir or runs_root()) / CACHE_FILE
    key = data_key(cfg)
    cached = json.loads(path.read_text()) if path.exists() else {}
    if key in cached:
        return cached[key]
    train, val = get_datasets(cfg.dataset, cfg.train_subset, cfg.val_subset, cfg.seed, augment=False,
                              eval_size=cfg.eval_size, data_dir=cfg.data_dir, download=cfg.download)
    info = INFO[cfg.dataset]
    (x, y), (xv, yv) = _pixels(train, info.mean, info.std), _pixels(val, info.mean, info.std)
    accuracy = float(LogisticRegression(C=1.0, max_iter=1000).fit(x, y).score(xv, yv))
    path.parent.mkdir(parents=True, exist_ok=True)
    cached = json.loads(path.read_text()) if path.exists() else {}  # another chapter may have added its own
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({**cached, key: accuracy}, f, indent=1)
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return accuracy
