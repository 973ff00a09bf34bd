"""F-early and T-agree: the early decoders of the coded blocks.

Every coded block l predicts the class whose codeword is nearest to its subNN energies (Eq. 7).
F-early is the accuracy of each of them; T-agree groups the samples by how many early decoders
agree with the network's final prediction and reports how often that prediction is right.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def early_accuracy(collected: dict) -> pd.DataFrame:
    """Accuracy of each early decoder and of the final prediction.

    ``collected`` is the dict of :func:`coded_lib.analysis.collect`. Returns a frame with one row
    per coded block (decoder = 1..L, in order, as the early_acc_1..L columns of metrics.csv) and a
    last row decoder = "final": columns decoder, accuracy.
    """
    targets = collected["targets"]
    early = collected["early_preds"]
    rows = [{"decoder": i + 1, "accuracy": float((early[:, i] == targets).float().mean())}
            for i in range(early.shape[1])]
    rows.append({"decoder": "final", "accuracy": float((collected["preds"] == targets).float().mean())})
    return pd.DataFrame(rows)


def agreement_table(preds, early_preds, targets) -> pd.DataFrame:
    """T-agree: final accuracy grouped by the number of early decoders agreeing with it.

    preds [S] final predictions, early_preds [S, L], targets [S]. One row per number of agreeing
    decoders a = 0..L: n_agree, count, fraction (of all samples), accuracy (NaN when count = 0).
    """
    preds, targets = torch.as_tensor(preds).long(), torch.as_tensor(targets).long()
    early_preds = torch.as_tensor(early_preds).long()
    if early_preds.ndim != 2 or early_preds.shape[0] != preds.shape[0] or targets.shape != preds.shape:
        raise ValueError(f"need preds [S], early_preds [S, L], targets [S]; got {tuple(preds.shape)}, "
                         f"{tuple(early_preds.shape)}, {tuple(targets.shape)}")
    n_agree = (early_preds == preds[:, None]).sum(1)
    correct = (preds == targets).double()
    L = early_preds.shape[1]
    count = torch.bincount(n_agree, minlength=L + 1).double()
    hits = torch.bincount(n_agree, weights=correct, minlength=L + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = hits.numpy() / count.numpy()
    return pd.DataFrame({"n_agree": np.arange(L + 1), "count": count.long().numpy(),
                         "fraction": count.numpy() / max(len(preds), 1), "accuracy": accuracy})
