"""Small metrics of the binary classifiers (F-binary), counted as the authors' code counts them.

A positive is detected when its score (the logit of its class) is > threshold and a negative
rejected when its score is < threshold (both strict), so a score equal to the threshold counts
against the classifier either way; with continuous scores this almost never happens.
"""
from __future__ import annotations

import numpy as np

GRID_STEPS = 100  # the authors' threshold grid: 100 steps from the median positive to the median negative score


def _scores_labels(scores, labels):
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores has {scores.size} values but labels has {labels.size}")
    if scores.size == 0:
        raise ValueError("no scores given")
    return scores, labels


def _counts(pos, neg, t) -> tuple[int, int]:
    """(TP, FP) at threshold t, as the module says: positives > t, negatives not < t."""
    return int(np.sum(pos > t)), len(neg) - int(np.sum(neg < t))


def _f1(pos, neg, t) -> float:
    tp, fp = _counts(pos, neg, t)
    return float(2 * tp / (len(pos) + tp + fp))  # 2TP / (2TP + FN + FP), with TP + FN = P


def best_f1_threshold(scores, labels, neg_ratio=None, draws: int = 10, seed: int = 0) -> tuple[float, float]:
    """The authors' F1-optimal threshold (their ``Compute_Threshold_for_Best_F1``) and F1 there.

    The grid runs from the median positive score towards the median negative score in steps of
    1/GRID_STEPS of their difference (``np.arange``: the median negative itself is left out); the
    first grid value with the highest F1 wins (the one nearest the positives). ``neg_ratio`` None
    (CIFAR-10): one search over all negatives. A number (CIFAR-100, ImageNet: 9): ``draws``
    searches, each F1 on int(neg_ratio * P) negatives drawn afresh at every grid value, and the
    threshold is the mean of the draws' best ones; the F1 returned is one more draw's at that mean.
    """
    scores, labels = _scores_labels(scores, labels)
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        raise ValueError(f"a threshold needs positives and negatives; got {len(pos)} and {len(neg)}")
    lo, hi = np.median(pos), np.median(neg)
    grid = np.arange(lo, hi, (hi - lo) / GRID_STEPS) if hi != lo else np.array([lo])
    rng = np.random.default_rng(seed)
    n_keep = None if neg_ratio is None else int(neg_ratio * len(pos))

    def negatives():
        if n_keep is None or n_keep >= len(neg):
            return neg
        return rng.choice(neg, n_keep, replace=False)

    best = [grid[int(np.argmax([_f1(pos, negatives(), t) for t in grid]))]
            for _ in range(1 if neg_ratio is None else draws)]
    threshold = float(np.mean(best))
    return threshold, _f1(pos, negatives(), threshold)


def precision_recall(scores, labels, threshold) -> tuple[float, float]:
    """Precision TP/(TP+FP) and recall TP/P at ``threshold``, counted as the module says (TP: positives
    > threshold, FP: negatives not < threshold). Precision is 0 when nothing is detected, recall 0
    when there is no positive (scikit-learn's ``zero_division=0``)."""
    scores, labels = _scores_labels(scores, labels)
    tp, fp = _counts(scores[labels], scores[~labels], threshold)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / labels.sum() if labels.sum() else 0.0
    return float(precision), float(recall)


def f1_score(scores, labels, threshold) -> float:
    """F1 = 2PR/(P+R) at ``threshold`` (0 when P + R = 0)."""
    p, r = precision_recall(scores, labels, threshold)
    return 2 * p * r / (p + r) if p + r else 0.0
