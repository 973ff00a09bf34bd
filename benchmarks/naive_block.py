"""The naive coded block: the reference the benchmarks compare coded_lib's block against.

This is how the authors' code computes a coded block: the expand 1x1 conv is a grouped conv with
N groups and N*C_out outputs, so every path output t_n (C_out x H x W) exists in memory at once,
an [B, N, C_out, H, W] tensor, N times the activation of a plain ResNeXt block. Its energies
(Eq. 2), normalization (Eq. 3) and DropSubNN are then plain element-wise operations on that tensor.

coded_lib's block computes the same thing without the big tensor (SPEC §1.1, memory note). Kept
here only as the benchmarks' reference and as the independent check in tests/test_benchmarks.py.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from coded_lib.models import ENERGY_EPS, CodedResNeXt, ResNeXtBlock


class NaiveCodedBlock(nn.Module):
    """A coded block with materialised paths, built from (and equal in output to) a coded_lib block.

    Same call as :class:`coded_lib.models.ResNeXtBlock`: ``forward(x, keep, drop, targets)`` returns
    ``(output, normalized energies [B, N, 1, 1, 1])``; ``keep`` zeroes subNNs before the normalization,
    ``drop`` is the DropSubNN mask (already scaled by 1/(1-p)) applied after it.
    """

    def __init__(self, block: ResNeXtBlock):
        super().__init__()
        if not block.coded or block.scheme is None:
            raise ValueError("NaiveCodedBlock replaces coded blocks (r < 1); got a plain block")
        if block.combine != "sum" or block.coding != "loss":
            raise ValueError(f"NaiveCodedBlock is the paper's block (combine='sum', coding='loss'); "
                             f"got combine={block.combine!r}, coding={block.coding!r}")
        n, d, c_out = block.n, block.d, block.c_out
        self.n, self.d, self.c_out = n, d, c_out
        self.scheme, self.coded, self.norm_paths = block.scheme, True, block.norm_paths
        self.p_drop, self.combine, self.coding, self.skip = block.p_drop, "sum", "loss", block.skip
        self.index = block.index
        self.register_buffer("codewords", block.scheme.codewords(), persistent=False)
        self.conv1, self.bn1 = copy.deepcopy(block.conv1), copy.deepcopy(block.bn1)
        self.conv2, self.bn2 = copy.deepcopy(block.conv2), copy.deepcopy(block.bn2)
        self.bn3, self.downsample = copy.deepcopy(block.bn3), copy.deepcopy(block.downsample)
        # Path n's expand conv is W_n = dense weight[:, n*d:(n+1)*d]; stacked, it is group n of a
        # grouped conv whose outputs n*C_out .. (n+1)*C_out - 1 are t_n.
        self.expand = nn.Conv2d(n * d, n * c_out, 1, groups=n, bias=False)
        w = block.conv3.weight.detach().reshape(c_out, n, d)
        self.expand.weight.data = w.permute(1, 0, 2).reshape(n * c_out, d, 1, 1).clone()

    @property
    def n_act(self) -> int:
        return self.scheme.n_act

    def forward(self, x, keep=None, drop=None, targets=None):
        identity = x if self.downsample is None else self.downsample(x)
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        b, _, hh, ww = h.shape
        t = self.expand(h).reshape(b, self.n, self.c_out, hh, ww)  # the N x C_out tensor
        if keep is not None:
            t = t * keep.to(t.dtype).view(b, -1, 1, 1, 1)
        # E(t_n), Eq. 2, in float32 at least (under bf16 autocast too), as coded_lib does
        raw = t.to(torch.promote_types(t.dtype, torch.float32)).pow(2).mean(dim=(2, 3, 4))
        mean = (raw.sum(dim=1) / self.norm_paths).clamp_min(ENERGY_EPS)
        energies = raw / mean[:, None]  # Eq. 3
        t = t * mean.rsqrt().to(t.dtype)[:, None, None, None, None]
        if drop is not None:
            t = t * drop.to(t.dtype).view(b, -1, 1, 1, 1)
        out = self.bn3(t.sum(dim=1))
        if self.skip:
            out = out + identity
        return F.relu(out), energies.view(b, -1, 1, 1, 1)  # as coded_lib's blocks


def naive_model(model: CodedResNeXt) -> CodedResNeXt:
    """A copy of ``model`` whose coded blocks are :class:`NaiveCodedBlock` with the same weights."""
    naive = copy.deepcopy(model)  # coding schemes are immutable: the copy shares them
    blocks = [NaiveCodedBlock(b) if b.coded else b for b in naive.blocks]
    naive.blocks = nn.ModuleList(blocks)
    naive.coded_blocks = [b for b in blocks if b.coded]
    return naive
