"""The coding loss of Coded ResNeXt (Eq. 5 of the paper).

The total training loss (Eq. 6) is ``CE(logits, y) + mu * sum_l L_code,l``; the
cross-entropy and the weighting by ``mu`` live in the training loop, this module
only holds the per-block term.
"""
from __future__ import annotations

import torch

EXPONENTS = (4, 2, "abs")


def check_exponent(exponent) -> None:
    if exponent not in EXPONENTS:
        raise ValueError(f"loss_exponent={exponent!r} is not supported; allowed: 4 (the paper's), 2, 'abs'")


def _as(t: torch.Tensor, dtype) -> torch.Tensor:
    """``t.to(dtype)``, without an operator when it already is (the coded model counts its operators)."""
    return t if t.dtype == dtype else t.to(dtype)


def coding_loss(energies: torch.Tensor, codewords: torch.Tensor, ratio: float, exponent=4) -> torch.Tensor:
    """Coding loss of one coded block, Eq. 5, averaged over the N subNNs and the batch.

    ``energies`` [B, N] are the energies E(t̄_n) after energy normalization (Eq. 2-3),
    ``codewords`` [B, N] the 0/1 codeword of each sample's class and ``ratio`` r = N_act/N.
    An active subNN is pushed towards r·E = 1 (its share of the energy N/N_act),
    an inactive one towards 0. The paper uses the 4th power; 2 and |.| are its ablation (T-exp).
    """
    check_exponent(exponent)
    if energies.shape != codewords.shape:
        raise ValueError(f"energies {tuple(energies.shape)} and codewords {tuple(codewords.shape)} must have the same shape [B, N]")
    # a tensor of ratios (one per column: several blocks side by side) is the model's, checked there
    if not isinstance(ratio, torch.Tensor) and not 0.0 < ratio <= 1.0:  # nan fails too
        raise ValueError(f"ratio={ratio!r}; allowed: r = N_act/N in (0, 1]")
    # float32 (no cast operator where they already are: the coded model counts its operators)
    energies, codewords = _as(energies, torch.float32), _as(codewords, torch.float32)
    diff = ratio * energies - codewords
    if exponent == "abs":
        per_path = diff.abs()
    else:
        per_path = diff.pow(exponent)
    return per_path.mean()
