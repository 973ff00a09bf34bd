"""Anytime prediction (beyond the paper): accuracy against multiply-adds for three ways to stop early.

* a Coded ResNeXt's early decoders used as exits: stop after coded block l and take its early
  decoder's class (Eq. 7);
* the thin sub-networks of an IS-ResNeXt (coded_lib.beyond.anytime, seed 004), each counted with its
  structurally zero weights skipped;
* a plain ResNeXt, which has one operating point.
"""
from __future__ import annotations

import pandas as pd
import torch

from .cost import count_multiply_adds, multiply_adds_by_module
from .early import early_accuracy
from .inference import _batches, collect, eval_mode

# Costs are counted per image in batches of this size: the coded blocks' Gram matrices W_n^T W_n
# (coded_lib.models) depend on the weights only, and a batch shares them as inference does.
BATCH = 64


def exit_costs(model, input_size) -> list[float]:
    """Multiply-adds per image up to and including each coded block (the stem and every block before
    it): the cost of stopping there and reading its early decoder (whose K·N distances are left out)."""
    per = multiply_adds_by_module(model, input_size, batch_size=BATCH)
    costs, total = [], per.get("stem", 0.0)
    for i, b in enumerate(model.blocks):
        total += per.get(f"blocks.{i}", 0.0)
        if b.coded:
            costs.append(total)
    return costs


def thin_accuracies(is_model, loader, device="cpu") -> list[float]:
    """Validation accuracy of each thin sub-network k = 1..K of an IS-ResNeXt, from one pass per batch."""
    correct, n = torch.zeros(is_model.widths), 0
    with eval_mode(is_model):
        is_model.to(device)
        for x, y in _batches(loader, device):
            correct += torch.tensor([float((lg.argmax(1) == y).sum()) for lg in is_model.all_logits(x)])
            n += len(y)
    return (correct / max(n, 1)).tolist()


def anytime_table(coded, is_model, plain, loader, input_size) -> pd.DataFrame:
    """One row per operating point: method, point, multiply_adds (per image), accuracy.

    ``coded``: a Coded ResNeXt (its exits and its full network); ``is_model``: an IS-ResNeXt (its K
    thin sub-networks); ``plain``: a plain ResNeXt. ``fraction`` is multiply_adds over the plain one's.
    """
    rows = []
    early = early_accuracy(collect(coded, loader))
    exits = exit_costs(coded, input_size)
    for l, cost in enumerate(exits, 1):
        rows.append({"method": "Coded ResNeXt, early exit", "point": f"after coded block {l}",
                     "multiply_adds": cost, "accuracy": float(early.accuracy[early.decoder == l].item())})
    rows.append({"method": "Coded ResNeXt, early exit", "point": "whole network",
                 "multiply_adds": count_multiply_adds(coded, input_size, BATCH),
                 "accuracy": float(early.accuracy[early.decoder == "final"].item())})
    for k, acc in enumerate(thin_accuracies(is_model, loader), 1):
        thin = is_model.thin(k)
        rows.append({"method": "IS-ResNeXt, thin sub-network", "point": f"{k}/{is_model.widths} of the paths",
                     "multiply_adds": multiply_adds_by_module(thin, input_size, skip_zero_weights=True)[""],
                     "accuracy": acc})
    out = collect(plain, loader)
    plain_cost = count_multiply_adds(plain, input_size, BATCH)
    rows.append({"method": "ResNeXt", "point": "whole network", "multiply_adds": plain_cost,
                 "accuracy": float((out["preds"] == out["targets"]).float().mean())})
    table = pd.DataFrame(rows)
    return table.assign(fraction=table.multiply_adds / plain_cost)


def best_within(table: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Per method, its most accurate point costing at most ``fraction`` of the plain ResNeXt's
    multiply-adds (methods without such a point are left out)."""
    within = table[table.fraction <= fraction + 1e-9]
    return within.loc[within.groupby("method").accuracy.idxmax()].reset_index(drop=True)
