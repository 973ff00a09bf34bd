"""IS-ResNeXt: anytime prediction by thin sub-networks (Lee & Shin, seed 004; beyond the paper).

A ResNeXt whose k-th thin sub-network (k = 1..K) keeps, in every block, the first k/K of the
paths and of the channels. Every feature map x is split channel-wise into K parts
[x_1; ...; x_K], and the sparsity of §3.2 makes part k of a block's output depend on parts 1..k
of its input only:

* path i (of group g = its k) reads only the input parts x_1 .. x_g (the first 1x1 conv, masked
  block-lower-triangular);
* output part y_k is the sum of the paths of group k only (the last 1x1 conv, masked
  block-diagonal), plus the skip x_k (a projection, where the shape changes, is masked
  block-lower-triangular as well);
* BatchNorm, the grouped 3x3 conv and ReLU act per channel or per path, so they keep the property.

So one forward pass of the full network computes every thin sub-network at once: sub-network k's
features are the first channels of the full network's. Each has its own classifier g_k (global
average pool, then a linear layer, on its parts), and training minimizes Eq. 1 of seed 004, the sum
over k of the cross-entropies: ``ModelOutput.logits`` is the full width's (k = K) and
``code_loss`` carries the other K - 1 cross-entropies, which the training loop adds with weight
``mu``: train with mu = 1 (and p_drop = 0: no subNN dropping here).

:meth:`ISResNeXt.thin` cuts sub-network k out as a plain, physically smaller ResNeXt.
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..models import ARCHS, Arch, CodedResNeXt, ModelOutput, _plain


def bounds(c: int, widths: int) -> list[int]:
    """End of each of the K channel parts of c channels: part k is [bounds[k-1], bounds[k])."""
    return [c * k // widths for k in range(1, widths + 1)]


def _part(index: int, ends: list[int]) -> int:
    """0-based part of channel (or path) ``index``."""
    return next(k for k, end in enumerate(ends) if index < end)


class _Mask(nn.Module):
    """Weight parametrization: the weight times a fixed 0/1 mask (the sparsity of IS-ResNeXt)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight):
        return weight * self.mask


def _mask(conv: nn.Conv2d, out_part, in_part, allowed) -> None:
    w = conv.weight
    m = torch.tensor([[float(allowed(out_part(o), in_part(i))) for i in range(w.shape[1])] for o in range(w.shape[0])])
    with torch.no_grad():
        w.mul_(m[:, :, None, None])
    parametrize.register_parametrization(conv, "weight", _Mask(m[:, :, None, None]))


class ISResNeXt(nn.Module):
    """IS-ResNeXt with ``widths`` = K thin sub-networks, from a plain :class:`~coded_lib.models.Arch`.

    Every stage's N must be divisible by K (sub-network k keeps N k/K paths per block).
    ``forward(x, targets)`` -> ModelOutput (see the module's docstring); ``all_logits(x)`` -> the K
    sub-networks' logits from one pass; ``thin(k)`` -> sub-network k as a plain CodedResNeXt.
    """

    def __init__(self, arch: Arch, widths: int = 5, bn_momentum: float = 0.1):
        super().__init__()
        if not isinstance(widths, int) or isinstance(widths, bool) or widths < 1:
            raise ValueError(f"widths={widths!r}; allowed: a positive integer")
        bad = [st.name for st in arch.stages if st.n % widths or st.coded]
        if bad:
            raise ValueError(f"stages {bad}: IS-ResNeXt needs plain stages (r = 1) whose N is divisible by widths={widths}")
        self.arch, self.widths, self.num_classes = arch, widths, arch.num_classes
        self.net = CodedResNeXt(arch, p_drop=0.0, bn_momentum=bn_momentum)
        self.coded_blocks = []  # no coding loss, no early decoders
        c_in = arch.stem_width
        for b in self.net.blocks:
            ins, outs, paths = bounds(c_in, widths), bounds(b.c_out, widths), bounds(b.n, widths)
            hidden_part = lambda h, paths=paths, d=b.d: _part(h // d, paths)  # noqa: E731
            _mask(b.conv1, hidden_part, lambda i, ins=ins: _part(i, ins), lambda o, i: i <= o)
            _mask(b.conv3, lambda o, outs=outs: _part(o, outs), hidden_part, lambda o, i: i == o)
            if b.downsample is not None:
                _mask(b.downsample[0], lambda o, outs=outs: _part(o, outs), lambda i, ins=ins: _part(i, ins),
                      lambda o, i: i <= o)
            c_in = b.c_out
        self.net.head = nn.Identity()  # net(x).logits are then the pooled features; the K heads g_k follow
        self.ends = bounds(c_in, widths)
        self.heads = nn.ModuleList(nn.Linear(end, arch.num_classes, bias=False) for end in self.ends)

    def all_logits(self, x) -> list[torch.Tensor]:
        """[g_k(first channels of the pooled features) for k = 1..K]: every sub-network, one pass."""
        features = self.net(x).logits
        return [head(features[:, :end]) for head, end in zip(self.heads, self.ends)]

    def forward(self, x, targets=None, subnn_mask=None) -> ModelOutput:
        if subnn_mask:
            raise ValueError("IS-ResNeXt has no coded blocks: subnn_mask is not allowed")
        logits = self.all_logits(x)
        thinner = logits[:-1]
        if targets is None or not thinner:
            aux = logits[-1].new_zeros((), dtype=torch.float32)
        else:  # Eq. 1 of seed 004 without its k = K term, which the loop's cross-entropy adds
            aux = sum(F.cross_entropy(lg.float(), targets) for lg in thinner)
        return ModelOutput(logits=logits[-1], code_loss=aux)

    @torch.no_grad()
    def thin(self, k: int) -> CodedResNeXt:
        """Sub-network k (1..K) as a plain ResNeXt of its own widths: stem and every block cut to
        their first k parts of channels and paths, head g_k. In eval mode its logits equal
        ``all_logits(x)[k - 1]``."""
        if not 1 <= k <= self.widths:
            raise ValueError(f"k={k}; allowed: 1..{self.widths}")
        K = self.widths
        arch = replace(self.arch, stem_width=bounds(self.arch.stem_width, K)[k - 1],
                       stages=tuple(replace(st, c_out=bounds(st.c_out, K)[k - 1], n=st.n * k // K, n_act=st.n * k // K)
                                    for st in self.arch.stages))
        small = CodedResNeXt(arch, p_drop=0.0)
        full = self.net.state_dict()
        state = {}
        for name, t in small.state_dict().items():
            if name.startswith("head."):
                continue
            key = name.replace(".weight", ".parametrizations.weight.original") if name not in full else name
            src = full[key]
            if "parametrizations" in key:
                src = src * full[key.replace("original", "0.mask")]
            state[name] = src[tuple(slice(0, n) for n in t.shape)] if t.dim() else src
        state["head.weight"] = self.heads[k - 1].weight  # g_k
        small.load_state_dict(state)
        return small.eval()


def is_resnext_mini(**kwargs) -> ISResNeXt:
    """IS-ResNeXt with :func:`coded_lib.models.resnext_mini`'s widths (our CPU default); see :func:`is_resnext`."""
    return is_resnext("coded_resnext_mini", **kwargs)


def is_resnext29_cifar10(**kwargs) -> ISResNeXt:
    """IS-ResNeXt with ResNeXt-29 (10x11d)'s widths (the GPU edition's network); see :func:`is_resnext`."""
    return is_resnext("coded_resnext29_cifar10", **kwargs)


def is_resnext(arch_name: str, widths: int = 5, num_classes: int | None = None, in_channels: int | None = None,
               p_drop: float = 0.0, bn_momentum: float = 0.1, **unused) -> ISResNeXt:
    """IS-ResNeXt with the widths of ``models.ARCHS[arch_name]`` (every stage plain), K = ``widths``.

    The training loop passes every model field of its Config; the coding-only ones (loss_exponent,
    combine, coding, skip) must keep their defaults, and p_drop must be 0.
    """
    defaults = {"loss_exponent": 4, "combine": "sum", "coding": "loss", "skip": True, "ratios": None, "schemes": None}
    bad = {k: v for k, v in unused.items() if k not in defaults or v != defaults[k]}
    if bad or p_drop:
        raise ValueError(f"IS-ResNeXt takes widths, num_classes, in_channels and bn_momentum; got {bad or {'p_drop': p_drop}} "
                         "(coding options do not apply: it has no coded blocks; p_drop must be 0)")
    arch = _plain(ARCHS[arch_name])
    arch = replace(arch, num_classes=num_classes or arch.num_classes, in_channels=in_channels or arch.in_channels,
                   dataset=None)
    return ISResNeXt(arch, widths, bn_momentum)


# The networks of this module a run can train by name (coded_lib.train.presets.trainable_models).
MODELS = {f.__name__: f for f in (is_resnext_mini, is_resnext29_cifar10)}
