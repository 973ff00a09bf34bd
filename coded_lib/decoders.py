"""Reading a trained Coded ResNeXt through its coding schemes.

* early decoders: each coded block predicts the class whose codeword is nearest to its
  subNN energies (Eq. 7);
* subNN removal: the masks of the removal experiment (F-removal);
* binary classifiers: keep only class c's active subNNs in every coded block and the c-th
  row of the final layer, either by masking the full model or by cutting out a physically
  smaller one (F-binary).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .coding import CodingScheme
from .models import CodedResNeXt, ResNeXtBlock, count_parameters


def _distances(energies: torch.Tensor, scheme: CodingScheme, check: bool = True, codewords=None) -> torch.Tensor:
    if energies.ndim != 2 or energies.shape[1] != scheme.N:
        raise ValueError(f"energies must be [B, N={scheme.N}], got {tuple(energies.shape)}")
    e = energies.float()
    # no nearest codeword for nan/inf, negative or all-zero energies (every subNN removed): argmin would say class 0
    bad = ~torch.isfinite(e).all(dim=1) | (e < 0).any(dim=1) | (e.sum(dim=1) <= 0) if check else None
    if check and bad.any():
        rows = bad.nonzero().flatten().tolist()
        raise ValueError(f"energies of samples {rows[:10]}{' ...' if len(rows) > 10 else ''} are nan, inf, negative or "
                         "all zero: no codeword is nearest; allowed: finite energies >= 0 with a positive sum per sample")
    # the official code rescales the energies to sum to N_act, the number of ones of a codeword
    v = e / e.sum(dim=1, keepdim=True).clamp_min(1e-12) * scheme.n_act
    return torch.cdist(v, scheme.codewords().to(v.device) if codewords is None else codewords)


def early_decode(energies: torch.Tensor, scheme: CodingScheme, check: bool = True, codewords=None) -> torch.Tensor:
    """Early decoder of one coded block (Eq. 7): argmin_k ||v - w_k||_2, [B] class indices.

    Energies with no nearest codeword (nan, inf, negative, all zero) raise ValueError; ``check=False``
    skips that test, and its read of the values on the host (for the training loop, which judges
    nan through its losses). ``codewords``: the scheme's table already on the energies' device (a
    block's ``codewords`` buffer), which spares a host-to-device copy per call.
    """
    return _distances(energies, scheme, check, codewords).argmin(dim=1)


def early_scores(energies: torch.Tensor, scheme: CodingScheme) -> torch.Tensor:
    """Soft version of :func:`early_decode`: softmax over minus the distances, [B, K]."""
    return F.softmax(-_distances(energies, scheme), dim=1)


def _check_targets(targets, num_classes: int) -> torch.Tensor:
    targets = torch.as_tensor(targets)
    if targets.ndim != 1 or targets.is_floating_point():
        raise ValueError(f"targets must be a 1-d tensor of class indices, got {targets.dtype} {tuple(targets.shape)}")
    if len(targets) and not 0 <= int(targets.min()) <= int(targets.max()) < num_classes:
        raise ValueError(f"targets range over {int(targets.min())}..{int(targets.max())}; allowed: 0..{num_classes - 1}")
    return targets


def _check_block(model: CodedResNeXt, block: int) -> ResNeXtBlock:
    if not model.coded_blocks:
        raise ValueError("this model has no coded block (a plain ResNeXt): nothing to remove or decode")
    if not 0 <= block < len(model.coded_blocks):
        raise ValueError(f"block={block}; this model has coded blocks 0..{len(model.coded_blocks) - 1}")
    return model.coded_blocks[block]


def removal_mask(model: CodedResNeXt, targets: torch.Tensor, block: int, k: int, kind: str = "active",
                 generator: torch.Generator | None = None) -> dict[int, torch.Tensor]:
    """Keep-mask removing, for each sample, k random subNNs of coded block ``block`` drawn from
    its class's active (``kind="active"``) or inactive set (SPEC §3, the official code's removal)."""
    b = _check_block(model, block)
    if kind not in ("active", "inactive"):
        raise ValueError(f"kind={kind!r}; allowed: 'active', 'inactive'")
    available = b.n_act if kind == "active" else b.n - b.n_act
    if not 0 <= k <= available:
        raise ValueError(f"k={k}; block {block} has {available} {kind} subNNs per class, so 0 <= k <= {available}")
    targets = _check_targets(targets, b.scheme.K)
    words = b.scheme.codewords()[targets.cpu()]
    pool = words if kind == "active" else 1 - words
    # random priorities, -1 outside the pool: the k largest are k uniform draws from the pool
    prio = torch.rand(pool.shape, generator=generator) * pool - (1 - pool)
    keep = torch.ones_like(pool)
    if k:
        keep.scatter_(1, prio.topk(k, dim=1).indices, 0.0)
    return {block: keep.to(targets.device)}


def class_mask(model: CodedResNeXt, c: int, batch_size: int, device=None) -> dict[int, torch.Tensor]:
    """Keep-mask of the binary classifier of class c: only c's active subNNs in every coded block."""
    if not 0 <= c < model.num_classes:
        raise ValueError(f"class c={c}; allowed 0..{model.num_classes - 1}")
    return {b.index: b.scheme.codewords()[c].to(device).expand(batch_size, -1) for b in model.coded_blocks}


def binary_logit(model: CodedResNeXt, x: torch.Tensor, c: int) -> torch.Tensor:
    """Logit of class c of the full model masked to c's active subNNs, [B]."""
    return model(x, subnn_mask=class_mask(model, c, x.shape[0], x.device)).logits[:, c]


def _copy_without(module: nn.Module, parts: list[nn.Module]) -> nn.Module:
    """A deep copy of ``module`` in which ``parts`` are not copied (they stay None until replaced):
    deepcopy's memo answers them as already copied, so their weights are never duplicated."""
    return copy.deepcopy(module, memo={id(p): None for p in parts})


def _slice_block(block: ResNeXtBlock, paths: list[int]) -> ResNeXtBlock:
    """A copy of ``block`` holding only the given paths; it still normalizes by the full N (Eq. 3)."""
    d = block.d
    idx = torch.tensor([p * d + j for p in paths for j in range(d)])
    # copy the block's small parts only: the path convs/BNs are rebuilt sliced below, and the
    # codeword table belongs to the full scheme, not to a single-class classifier
    small = _copy_without(block, [block.conv1, block.bn1, block.conv2, block.bn2, block.conv3])
    small._buffers.pop("codewords", None)
    small.n = len(paths)
    small.norm_paths = block.norm_paths
    small.scheme = None  # no codeword table for a single class; it stays an energy-normalizing block
    small.coded = block.coded
    small.p_drop = 0.0
    hidden = len(idx)
    small.conv1 = nn.Conv2d(block.conv1.in_channels, hidden, 1, bias=False)
    small.conv1.weight.data = block.conv1.weight.data[idx].clone()
    small.conv2 = nn.Conv2d(hidden, hidden, 3, stride=block.conv2.stride, padding=1, groups=len(paths), bias=False)
    small.conv2.weight.data = block.conv2.weight.data[idx].clone()
    for name in ("bn1", "bn2"):
        bn_full, bn = getattr(block, name), nn.BatchNorm2d(hidden, momentum=getattr(block, name).momentum)
        for attr in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn, attr).data = getattr(bn_full, attr).data[idx].clone()
        setattr(small, name, bn)
    if block.combine == "sum":
        small.conv3 = nn.Conv2d(hidden, block.c_out, 1, bias=False)
        small.conv3.weight.data = block.conv3.weight.data[:, idx].clone()
    else:
        raise ValueError("extracting a binary classifier is defined for combine='sum' (the paper's block)")
    return small


class BinaryClassifier(nn.Module):
    """Class c's sub-model of a Coded ResNeXt: x -> logit of class c, [B]."""

    def __init__(self, net: CodedResNeXt, c: int):
        super().__init__()
        self.net, self.c = net, c

    def forward(self, x):
        return self.net(x).logits[:, 0]


def extract_binary_classifier(model: CodedResNeXt, c: int) -> BinaryClassifier:
    """Cut out the binary classifier of class c (F-binary): in every coded block only the subNNs
    active for c, and only the c-th row of the final linear layer. Its output equals
    :func:`binary_logit` of the full model (in eval mode)."""
    if not model.coded_blocks:
        raise ValueError("a plain ResNeXt has no class-specific subNNs to extract")
    if not 0 <= c < model.num_classes:
        raise ValueError(f"class c={c}; allowed 0..{model.num_classes - 1}")
    small = _copy_without(model, [model.blocks, *model.blocks, model.head])  # all rebuilt below
    blocks = []
    for b in model.blocks:
        if b.coded:
            paths = [int(p) for p in b.scheme.table[c].nonzero()[0]]
            blocks.append(_slice_block(b, paths))
        else:
            blocks.append(copy.deepcopy(b))
    small.blocks = nn.ModuleList(blocks)
    small.coded_blocks = []  # no coding loss or early decoders in the extracted model
    small.head = nn.Linear(model.head.in_features, 1, bias=False)  # the network's head has no bias either
    small.head.weight.data = model.head.weight.data[c:c + 1].clone()
    small.num_classes = 1
    return BinaryClassifier(small, c).eval()


def _residual_path_params(blocks) -> int:
    return count_parameters(*(m for b in blocks for m in (b.conv1, b.bn1, b.conv2, b.bn2, b.conv3)))


def parameter_fractions(model: CodedResNeXt, c: int) -> dict[str, float]:
    """Size of class c's binary classifier relative to the full model, counted two ways:
    ``whole`` (every parameter) and ``residual_paths`` (the subNNs' convs and BNs only: no stem,
    skip projections, post-sum BN or final layer). The paper's 38 % / 27 % / 35 % does not say which."""
    small = extract_binary_classifier(model, c)
    whole = count_parameters(small) / count_parameters(model)
    paths = _residual_path_params(small.net.blocks) / _residual_path_params(model.blocks)
    return {"whole": whole, "residual_paths": paths}
