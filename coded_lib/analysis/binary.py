"""F-binary and F-bindist: the binary classifier of each class hidden inside a Coded ResNeXt.

The classifier of class c is the network with only c's active subNNs in every coded block and
only the c-th row of the final layer; its score is the logit of class c. As in the official code
(SPEC §3), its threshold maximizes F1 on the training images as the training loader gives them
(augmented; :func:`coded_lib.analysis.metrics.best_f1_threshold` has the authors' grid), then
precision and recall are measured on validation data against in-distribution negatives (the other
classes) and against out-of-distribution negatives (another data set). With ``neg_ratio`` (9 for
CIFAR-100 and ImageNet, see :data:`NEG_RATIO`) the negatives are subsampled to that many times the
positives, for the threshold (averaged over 10 draws) and for the validation counts.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import precision_recall_curve, roc_auc_score

from .. import decoders
from .inference import _batches, collect, eval_mode
from .metrics import best_f1_threshold, precision_recall

GROUPS = ("ID positive", "ID negative", "OOD negative")

# The authors' negatives per positive, by data set: CIFAR-100 (and ImageNet, by the paper) subsample
# the negatives to 9x the positives; CIFAR-10 keeps all of them (already 9x with 10 classes) and
# searches once, and so do the other 10-class sets here (Fashion-MNIST, digits).
NEG_RATIO = {"cifar100": 9, "imagenet": 9}


def neg_ratio_for(dataset: str) -> int | None:
    """The ``neg_ratio`` the authors used for ``dataset`` (None: every negative, one search)."""
    return NEG_RATIO.get(dataset)


def _classes(model, classes):
    classes = list(range(model.num_classes)) if classes is None else [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c < model.num_classes]
    if bad:
        raise ValueError(f"classes {bad} out of range; allowed 0..{model.num_classes - 1}")
    return classes


def binary_scores(model, loader, classes=None, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """Scores of the binary classifiers on ``loader``: (scores [S, len(classes)], targets [S]).

    Column j is the logit of class ``classes[j]`` of the model masked to that class's active
    subNNs (:func:`coded_lib.decoders.class_mask`): one pass over the data per class. A plain
    ResNeXt has no masks, so its plain logits are returned (one pass).
    """
    classes = _classes(model, classes)
    if not model.coded_blocks:
        out = collect(model, loader, device)
        return out["logits"][:, classes].numpy(), out["targets"].numpy()
    cols, targets = [], None
    for c in classes:
        out = collect(model, loader, device, lambda x, y, c=c: decoders.class_mask(model, c, x.shape[0], x.device))
        cols.append(out["logits"][:, c])
        targets = out["targets"]
    return torch.stack(cols, dim=1).numpy(), targets.numpy()


@dataclass
class BinaryReport:
    """What :func:`binary_metrics` returns.

    table: one row per class: class, threshold, train_f1, precision_id, recall, f1_id,
        precision_ood, f1_ood, n_pos, n_neg_id, n_neg_ood (recall is the same for both kinds of
        negatives: the positives are the same validation samples).
    curves: long frame of precision-recall curves: class, negatives ("ID" | "OOD"), precision,
        recall, threshold (NaN for the curve's end point of recall 0).
    logits: long frame for the output distributions (F-bindist): class, group
        ("ID positive" | "ID negative" | "OOD negative"), logit.
    """
    table: pd.DataFrame
    curves: pd.DataFrame
    logits: pd.DataFrame


def _subsample(values, n_max, rng):
    if n_max is None or len(values) <= n_max:
        return values
    return values[np.sort(rng.choice(len(values), size=n_max, replace=False))]


def _curve(c, kind, pos, neg):
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    precision, recall, thresholds = precision_recall_curve(y, np.r_[pos, neg])
    return pd.DataFrame({"class": c, "negatives": kind, "precision": precision, "recall": recall,
                         "threshold": np.r_[thresholds, np.nan]})


def binary_metrics(train_scores, train_targets, val_scores, val_targets, ood_scores=None, classes=None,
                   neg_ratio=None, seed: int = 0, draws: int = 10) -> BinaryReport:
    """Thresholds, precision and recall of binary classifiers from their scores.

    *_scores are [S, C] arrays whose column j scores class ``classes[j]`` (default: j), e.g. from
    :func:`binary_scores`; every OOD sample is a negative for every class. ``neg_ratio``: keep at
    most ``neg_ratio`` times as many negatives as positives (random, ``seed``), and average the
    threshold over ``draws`` searches; None keeps all negatives and searches once (see
    :func:`neg_ratio_for`). train_f1 is the F1 at the threshold on the training scores.
    """
    train_scores, val_scores = np.asarray(train_scores), np.asarray(val_scores)
    train_targets, val_targets = np.asarray(train_targets), np.asarray(val_targets)
    if train_scores.ndim != 2 or val_scores.ndim != 2 or train_scores.shape[1] != val_scores.shape[1]:
        raise ValueError(f"scores must be [S, C] with the same C, got {train_scores.shape} and {val_scores.shape}")
    classes = list(range(train_scores.shape[1])) if classes is None else list(classes)
    if len(classes) != train_scores.shape[1]:
        raise ValueError(f"{len(classes)} classes given for {train_scores.shape[1]} score columns")
    if neg_ratio is not None and neg_ratio <= 0:
        raise ValueError(f"neg_ratio={neg_ratio}; must be positive or None")
    rng = np.random.default_rng(seed)
    rows, curves, dists = [], [], []
    for j, c in enumerate(classes):
        threshold, train_f1 = best_f1_threshold(train_scores[:, j], train_targets == c, neg_ratio, draws,
                                                seed=int(rng.integers(2**31)))
        pos = val_scores[val_targets == c, j]
        n_max = None if neg_ratio is None else int(round(neg_ratio * len(pos)))
        neg_sets = {"ID": _subsample(val_scores[val_targets != c, j], n_max, rng)}
        if ood_scores is not None:
            neg_sets["OOD"] = _subsample(np.asarray(ood_scores)[:, j], n_max, rng)
        row = {"class": c, "threshold": threshold, "train_f1": train_f1, "n_pos": len(pos)}
        for kind, neg in neg_sets.items():
            labels = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
            p, r = precision_recall(np.r_[pos, neg], labels, threshold)
            row.update({f"precision_{kind.lower()}": p, "recall": r, f"f1_{kind.lower()}": 2 * p * r / (p + r) if p + r else 0.0,
                        f"n_neg_{kind.lower()}": len(neg)})
            curves.append(_curve(c, kind, pos, neg))
        rows.append(row)
        for group, values in zip(GROUPS, (pos, neg_sets["ID"], neg_sets.get("OOD"))):
            if values is not None:
                dists.append(pd.DataFrame({"class": c, "group": group, "logit": values}))
    columns = ["class", "threshold", "train_f1", "precision_id", "recall", "f1_id", "precision_ood", "f1_ood",
               "n_pos", "n_neg_id", "n_neg_ood"]
    table = pd.DataFrame(rows)
    table = table[[col for col in columns if col in table]]
    return BinaryReport(table, pd.concat(curves, ignore_index=True), pd.concat(dists, ignore_index=True))


def binary_classifiers(model, train_loader, val_loader, ood_loader=None, classes=None, neg_ratio=None,
                       device="cpu", seed: int = 0) -> BinaryReport:
    """F-binary / F-bindist for a model: :func:`binary_scores` on the three loaders, then
    :func:`binary_metrics`. ``train_loader`` only sets the thresholds: the authors use the training
    loader with its augmentation, up to 50k samples (one epoch on CIFAR); the OOD loader's labels
    are ignored."""
    classes = _classes(model, classes)
    train_s, train_t = binary_scores(model, train_loader, classes, device)
    val_s, val_t = binary_scores(model, val_loader, classes, device)
    ood_s = binary_scores(model, ood_loader, classes, device)[0] if ood_loader is not None else None
    return binary_metrics(train_s, train_t, val_s, val_t, ood_s, classes, neg_ratio, seed)


def masked_vs_extracted(model, loader, classes=None, device="cpu") -> pd.DataFrame:
    """Check that each extracted binary classifier equals the masked full model, and compare them.

    For each class: the largest |difference| between :func:`coded_lib.decoders.binary_logit`
    and :func:`coded_lib.decoders.extract_binary_classifier` over ``loader``, the seconds each
    took for the pass, and the extracted model's parameter fractions (whole model and residual
    paths only; :func:`coded_lib.decoders.parameter_fractions`).
    """
    classes = _classes(model, classes)
    model.to(device)
    rows = []
    for c in classes:
        small = decoders.extract_binary_classifier(model, c).to(device)
        diff, t_masked, t_small = 0.0, 0.0, 0.0
        with eval_mode(model), eval_mode(small):
            for x, _ in _batches(loader, device):
                t0 = time.perf_counter()
                masked = decoders.binary_logit(model, x, c)
                t1 = time.perf_counter()
                extracted = small(x)
                t2 = time.perf_counter()
                t_masked, t_small = t_masked + t1 - t0, t_small + t2 - t1
                diff = max(diff, float((masked - extracted).abs().max()))
        fractions = decoders.parameter_fractions(model, c)
        rows.append({"class": c, "max_abs_diff": diff, "masked_s": t_masked, "extracted_s": t_small,
                     "params_fraction_whole": fractions["whole"],
                     "params_fraction_residual_paths": fractions["residual_paths"]})
    return pd.DataFrame(rows)


def logit_auc(logits: pd.DataFrame, negatives: str) -> pd.Series:
    """Per class, the ROC AUC of its logit for its positives ("ID positive") against one group of
    negatives (``negatives``: "ID negative" or "OOD negative") of a report's ``logits`` table (F-bindist)."""
    d = logits[logits.group.isin(["ID positive", negatives])]
    return pd.Series({c: roc_auc_score(g.group == "ID positive", g.logit) for c, g in d.groupby("class")})
