"""Conditional computation with the early decoders (beyond the paper; cf. seed 002's gates).

At inference, run the network up to a coded block ("the gate"); where its early decoder is
confident (its largest soft score, ``decoders.early_scores``, at least ``threshold``), run in every
later coded block only the subNNs active for its ``top`` most likely classes (the union of their
codewords), cut out physically as the binary classifiers are (``decoders._slice_block``: the
kept paths still normalize by the block's N, as removal does). Elsewhere the network runs whole.
Threshold 0 gates every sample (the masked model), threshold inf none (the full model).
"""
from __future__ import annotations

import math
import time

import pandas as pd
import torch
import torch.nn.functional as F

from .. import decoders
from .cost import count_multiply_adds, multiply_adds_by_module
from .anytime import BATCH
from .inference import _batches, eval_mode


class ConditionalNet:
    """``ConditionalNet(model, gate_block, top)(x, threshold)`` -> (logits [B, K], kept [B, L] paths
    per later coded block, gated [B] bool). ``model``: a trained Coded ResNeXt in eval mode."""

    def __init__(self, model, gate_block: int = 0, top: int = 1):
        coded = model.coded_blocks
        if not 0 <= gate_block < len(coded) - 1:
            raise ValueError(f"gate_block={gate_block}; allowed: 0..{len(coded) - 2} (a coded block with coded blocks after it)")
        if not 1 <= top <= model.num_classes:
            raise ValueError(f"top={top}; allowed: 1..{model.num_classes}")
        self.model, self.top = model, top
        self.gate = gate_block
        self.pos = next(i for i, b in enumerate(model.blocks) if b is coded[gate_block])
        self._sliced = {}

    def _block(self, i, paths):
        key = (i, paths)
        if key not in self._sliced:
            self._sliced[key] = decoders._slice_block(self.model.blocks[i], list(paths)).eval()
        return self._sliced[key]

    def early(self, x):
        """(features after the gate block, its early decoder's soft scores [B, K])."""
        out = self.model.stem(x)
        for b in self.model.blocks[:self.pos + 1]:
            out, energies = b(out)
        return out, decoders.early_scores(energies.flatten(1), self.model.blocks[self.pos].scheme)

    @torch.no_grad()
    def __call__(self, x, threshold: float):
        if math.isnan(threshold):
            raise ValueError("threshold is nan; allowed: a number, inf for none gated")
        out, scores = self.early(x)
        gated = scores.max(1).values >= threshold
        top = scores.topk(self.top, dim=1).indices
        kept = []
        for i in range(self.pos + 1, len(self.model.blocks)):
            b = self.model.blocks[i]
            if not b.coded:
                out, _ = b(out)
                continue
            keep = b.codewords[top].amax(1).bool() & gated[:, None]  # [B, N]; none for the ungated
            kept.append(torch.where(gated, keep.sum(1), b.n))
            new = out.new_empty((len(out), b.c_out, *b.hidden_size(*out.shape[2:])))
            if (~gated).any():
                new[~gated] = b(out[~gated])[0]
            if gated.any():
                rows, inverse = torch.unique(keep[gated], dim=0, return_inverse=True)
                idx = torch.nonzero(gated).flatten()
                for j, row in enumerate(rows):
                    sel = idx[inverse == j]
                    new[sel] = self._block(i, tuple(torch.nonzero(row).flatten().tolist()))(out[sel])[0]
            out = new
        logits = self.model.head(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
        return logits, torch.stack(kept, 1), gated

    def masks(self, x):
        """The ``subnn_mask`` of the masked model for ``x``: every later coded block keeps the
        subNNs active for the gate's top classes (for checking threshold 0 against the model)."""
        _, scores = self.early(x)
        top = scores.topk(self.top, dim=1).indices
        return {b.index: b.codewords[top].amax(1) for b in self.model.coded_blocks[self.gate + 1:]}

    def path_costs(self, input_size) -> dict[int, list[float]]:
        """Multiply-adds per image of each later coded block (by position in model.blocks) with
        p = 1..N of its paths kept, as a list indexed by p - 1 (cut out as in ``__call__``; the cost
        depends only on p)."""
        per = multiply_adds_by_module(self.model, input_size, batch_size=BATCH)
        inputs = {}
        hooks = [self.model.blocks[i].register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0]))
                 for i in range(self.pos + 1, len(self.model.blocks)) if self.model.blocks[i].coded]
        try:
            with eval_mode(self.model):
                self.model(torch.zeros(1, *input_size))
        finally:
            for h in hooks:
                h.remove()
        costs = {}
        for i, x in inputs.items():
            b = self.model.blocks[i]
            costs[i] = [count_multiply_adds(self._block(i, tuple(range(p))), tuple(x.shape[1:]), BATCH)
                        for p in range(1, b.n)] + [per[f"blocks.{i}"]]
        return costs


def conditional_sweep(model, loader, fractions, gate_block: int = 0, top: int = 1, input_size=None,
                      repeats: int = 3) -> pd.DataFrame:
    """Accuracy, mean multiply-adds per image and wall time of :class:`ConditionalNet` for a sweep
    of thresholds, and of the full model (first row, threshold NaN).

    The thresholds are the quantiles of the gate's confidence on ``loader`` that gate about each of
    ``fractions`` of its samples (0: threshold inf, 1: threshold 0).

    Multiply-adds: the full model's count (``count_multiply_adds``) minus, for every gated sample and
    later coded block, what its cut-out paths save. Wall time: the fastest of ``repeats`` passes over
    the loader (CPU, with torch's current thread count), the data loading excluded.
    """
    batches = list(_batches(loader, "cpu"))
    if input_size is None:
        input_size = tuple(batches[0][0].shape[1:])
    net = ConditionalNet(model, gate_block, top)
    with eval_mode(model):
        confidence = torch.cat([net.early(x)[1].max(1).values for x, _ in batches])
    thresholds = [0.0 if f >= 1 else math.inf if f <= 0 else float(torch.quantile(confidence, 1 - f)) for f in fractions]
    full = count_multiply_adds(model, input_size, BATCH)
    costs = net.path_costs(input_size)
    later = sorted(costs)

    def timed(fn):
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            outs = [fn(x) for x, _ in batches]
            best = min(best, time.perf_counter() - t0)
        return outs, best

    targets = torch.cat([y for _, y in batches])
    with eval_mode(model):
        outs, seconds = timed(lambda x: model(x).logits)
        rows = [{"threshold": None, "gated": 0.0, "accuracy": float((torch.cat(outs).argmax(1) == targets).float().mean()),
                 "multiply_adds": full, "seconds": seconds}]
        for t in thresholds:
            outs, seconds = timed(lambda x: net(x, t))
            logits = torch.cat([o[0] for o in outs])
            kept, gated = torch.cat([o[1] for o in outs]), torch.cat([o[2] for o in outs])
            saved = sum(costs[i][-1] - torch.tensor(costs[i])[kept[:, j] - 1] for j, i in enumerate(later))
            rows.append({"threshold": t, "gated": float(gated.float().mean()),
                         "accuracy": float((logits.argmax(1) == targets).float().mean()),
                         "multiply_adds": float((full - saved).mean()), "seconds": seconds})
    table = pd.DataFrame(rows)
    return table.assign(fraction=table.multiply_adds / full, speedup=table.seconds.iloc[0] / table.seconds)


def sweep_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """``conditional_sweep`` as a reader's table: percentages, and the gate said in words where its threshold
    is not a number to print (the full model's row has none; inf gates no image; 0 gates every one), as its index."""
    def gate(t):
        if t is None or (isinstance(t, float) and math.isnan(t)):
            return "full model (no gate)"
        return "gate, none taken" if math.isinf(t) else f"confidence ≥ {t:.3f}"

    return pd.DataFrame({"gate": [gate(t) for t in sweep.threshold], "% gated": (100 * sweep.gated).round(1),
                         "accuracy (%)": (100 * sweep.accuracy).round(2),
                         "% of the multiply-adds": (100 * sweep.fraction).round(1),
                         "seconds": sweep.seconds.round(3), "speed-up": sweep.speedup.round(2)}).set_index("gate")
