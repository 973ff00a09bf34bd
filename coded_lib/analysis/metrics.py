"""Small metrics of the binary classifiers (F-binary): F1-optimal threshold, precision, recall.

A binary classifier predicts "positive" when its score (the logit of its class) is >= threshold.
"""
from __future__ import annotations

import numpy as np


def _scores_labels(scores, labels):
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores has {scores.size} values but labels has {labels.size}")
    if scores.size == 0:
        raise ValueError("no scores given")
    return scores, labels


def best_f1_threshold(scores, labels) -> tuple[float, float]:
    """The threshold t maximizing F1 of the rule ``score >= t`` on (scores, labels), and that F1.

    Every distinct score is a candidate (a threshold between two consecutive scores classifies
    like the upper one). Vectorised: sort once, cumulative true positives at each distinct
    score. Ties in F1 go to the highest threshold (fewest predicted positives). With no positive
    label F1 is 0 everywhere; the highest score is returned.
    """
    scores, labels = _scores_labels(scores, labels)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    # the last position of each run of equal scores: "score >= s[i]" selects exactly s[:i+1]
    last = np.r_[np.nonzero(s[1:] != s[:-1])[0], s.size - 1]
    tp = np.cumsum(y)[last]
    predicted = last + 1
    f1 = 2 * tp / (predicted + y.sum())  # 2TP / (2TP + FP + FN) with TP + FP = predicted, TP + FN = P
    best = int(np.argmax(f1))
    return float(s[last[best]]), float(f1[best])


def precision_recall(scores, labels, threshold) -> tuple[float, float]:
    """Precision TP/(TP+FP) and recall TP/(TP+FN) of ``score >= threshold``.

    Precision is 0 when nothing is predicted positive and recall 0 when there is no positive
    (scikit-learn's ``zero_division=0``).
    """
    scores, labels = _scores_labels(scores, labels)
    pred = scores >= threshold
    tp = int(np.sum(pred & labels))
    precision = tp / pred.sum() if pred.sum() else 0.0
    recall = tp / labels.sum() if labels.sum() else 0.0
    return float(precision), float(recall)


def f1_score(scores, labels, threshold) -> float:
    """F1 = 2PR/(P+R) of ``score >= threshold`` (0 when P + R = 0)."""
    p, r = precision_recall(scores, labels, threshold)
    return 2 * p * r / (p + r) if p + r else 0.0
