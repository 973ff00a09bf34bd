"""Scale dependence (issue 20): how the coded − plain accuracy gap (T-acc) and the binary classifiers'
precision and F1 (F-binary) move with the number of training images, from separate trainings at each
size (not checkpoints of one run), several seeds each.

``per_seed`` is one row per (training images, seed): the coded and the plain run's final test
accuracy, and the coded run's binary classifiers' mean precision and F1 against the other classes
(thresholds from training images). ``summary`` turns it into one row per size with Welch's gap over
the seeds and the seeds' mean precision and F1 with their SE; ``holds_from`` says from which size on a
verdict holds at every larger size.
"""
from __future__ import annotations

import pandas as pd

from .stats import one_sample, welch

PER_SEED = ("train_images", "seed", "coded_acc", "plain_acc", "precision", "f1")


def summary(per_seed: pd.DataFrame) -> pd.DataFrame:
    """One row per training-set size: accuracies (%), the gap's Welch effect (points), precision and F1
    (mean and SE over the seeds)."""
    missing = sorted(set(PER_SEED) - set(per_seed.columns))
    if missing:
        raise ValueError(f"per_seed lacks columns {missing}; needs {list(PER_SEED)}")
    rows = []
    for n, d in per_seed.groupby("train_images", sort=True):
        gap = welch(100 * d.coded_acc, 100 * d.plain_acc)
        precision, f1 = one_sample(d.precision), one_sample(d.f1)
        rows.append({"train_images": int(n), "seeds": len(d), "coded (%)": 100 * d.coded_acc.mean(),
                     "plain (%)": 100 * d.plain_acc.mean(), "gap (points)": gap.value, "gap SE": gap.se,
                     "gap t": gap.t, "gap df": gap.df, "precision": precision.value, "precision SE": precision.se,
                     "F1": f1.value, "F1 SE": f1.se, "_gap": gap, "_precision": precision})
    return pd.DataFrame(rows)


def holds_from(sizes, verdicts, holds: str = "holds"):
    """The smallest size from which every verdict (sizes ascending) is ``holds``; None if the largest is not."""
    pairs = sorted(zip(sizes, verdicts))
    start = None
    for n, v in pairs:
        if v == holds:
            start = n if start is None else start
        else:
            start = None
    return start
