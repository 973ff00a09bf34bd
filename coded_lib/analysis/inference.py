"""Batch inference shared by the analyses: one pass over a DataLoader, everything kept on CPU."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .. import decoders


def _batches(loader, device):
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("the loader must yield (images, targets) pairs")
        yield batch[0].to(device), batch[1].to(device).long()


@contextmanager
def eval_mode(model):
    """The model in eval mode with gradients off; its previous train/eval mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def collect(model, loader, device="cpu", subnn_mask_fn=None) -> dict:
    """Run ``model`` over ``loader`` (eval mode, no grad) and gather its outputs.

    ``subnn_mask_fn(x, y)`` may return a ``subnn_mask`` dict for each batch (subNN removal,
    binary-classifier masks; see :mod:`coded_lib.decoders`). Returns a dict of CPU tensors:

    * ``logits`` [S, K] float32, ``targets`` [S] long, ``preds`` [S] long (argmax of the logits);
    * ``energies``: one [S, N] tensor per coded block (normalized energies, Eq. 3);
    * ``early_preds`` [S, L] long: the early decoder of each of the L coded blocks (Eq. 7).
    """
    logits, targets, energies = [], [], []
    with eval_mode(model):
        model.to(device)
        for x, y in _batches(loader, device):
            mask = subnn_mask_fn(x, y) if subnn_mask_fn is not None else None
            out = model(x, subnn_mask=mask)
            logits.append(out.logits.float().cpu())
            targets.append(y.cpu())
            energies.append([e.float().cpu() for e in out.energies])
    if not logits:
        raise ValueError("the loader yielded no batch")
    logits, targets = torch.cat(logits), torch.cat(targets)
    energies = [torch.cat(per_block) for per_block in zip(*energies)]
    early = [decoders.early_decode(e, b.scheme) for e, b in zip(energies, model.coded_blocks)]
    early_preds = torch.stack(early, dim=1) if early else torch.empty(len(targets), 0, dtype=torch.long)
    return {"logits": logits, "targets": targets, "preds": logits.argmax(1),
            "energies": energies, "early_preds": early_preds}
