"""Coded ResNeXt and ResNeXt, described by stage tables (Table 1 of the paper).

A ResNeXt block has N parallel paths (subNNs): 1x1 conv -> BN -> ReLU -> grouped 3x3
conv -> BN -> ReLU -> 1x1 conv, summed, then BN and ``relu(sum + skip)``. Summing the N
per-path 1x1 convs is one dense 1x1 conv over the concatenated hidden channels, so a
plain block is just ``conv1, conv2 (groups=N), conv3``.

A coded block (ratio r = N_act/N < 1) additionally:
  * normalizes the energies of the path outputs t_n (Eq. 2-3),
  * returns the normalized energies for the coding loss (Eq. 5) and the early decoder (Eq. 7),
  * drops whole subNNs in training (DropSubNN), one mask shared by consecutive blocks of a scheme,
  * can remove chosen subNNs (zeroed before the normalization).

The paths are never materialised: with h_n the n-th path's hidden activation (d channels)
and W_n its slice of the dense expand weight (C_out x d),
``E(t_n) = mean_p h_n(p)^T (W_n^T W_n) h_n(p) / C_out``, and the masked sum of the normalized
paths is ``s * W (m ⊙ h)`` with s the per-sample scale of Eq. 3: one dense conv, as in ResNeXt.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from .coding import CodingScheme, scheme_for
from .losses import check_exponent, coding_loss

# Numerical floor of the mean energy in Eq. 3: only reached when every subNN of a sample is removed.
ENERGY_EPS = 1e-12


@dataclass
class ModelOutput:
    """What every network here returns.

    logits: [B, K]. code_loss: sum over coded blocks of Eq. 5 (0 without targets).
    energies: one [B, N] float32 tensor per coded block, after energy normalization (rows sum to N).
    """
    logits: torch.Tensor
    code_loss: torch.Tensor
    energies: list[torch.Tensor] = field(default_factory=list)


@dataclass(frozen=True)
class Stage:
    """One row of Table 1: ``depth`` blocks [c_out, d, n_act/n], the first with ``stride``."""
    name: str
    c_out: int
    d: int
    n: int
    n_act: int
    depth: int
    stride: int

    @property
    def coded(self) -> bool:
        return self.n_act < self.n


@dataclass(frozen=True)
class Arch:
    stem: str  # "cifar": conv3x3; "imagenet": conv7x7 s2 + maxpool 3x3 s2
    stem_width: int
    stages: tuple[Stage, ...]
    num_classes: int
    in_channels: int = 3
    dataset: str | None = None  # whose paper coding schemes to use


def _check_sizes(**sizes) -> None:
    for name, v in sizes.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}={v!r}; allowed: a positive integer")


def _check_bn_momentum(bn_momentum) -> None:
    if not isinstance(bn_momentum, (int, float)) or not 0.0 < bn_momentum <= 1.0:  # nan fails too
        raise ValueError(f"bn_momentum={bn_momentum!r}; allowed: a number in (0, 1], PyTorch's convention "
                         "(the weight of the new batch statistic, e.g. 0.1)")


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


def conv3x3(c_in: int, c_out: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, groups=groups, bias=False)


class ResNeXtBlock(nn.Module):
    """A (Coded) ResNeXt block, Fig. 1 of the paper.

    ``scheme`` None makes a plain ResNeXt block. ``combine="concat"`` is the paper's "what if"
    (T-concat): each path maps to C_out/N channels and the outputs are concatenated.
    ``coding="detach"`` is the alternative of appendix E (T-detach): instead of the coding loss,
    the gradients of the subNNs that are inactive for a sample's class are blocked.
    ``norm_paths`` is the N of Eq. 3; it differs from ``n`` only in extracted binary classifiers,
    which keep N_act paths but must normalize as the full block does.
    """

    def __init__(self, c_in, c_out, d, n, stride=1, scheme: CodingScheme | None = None, *,
                 p_drop=0.0, combine="sum", coding="loss", skip=True, bn_momentum=0.1,
                 normalize=None, norm_paths=None):
        super().__init__()
        _check_sizes(c_in=c_in, c_out=c_out, d=d, n=n, stride=stride)
        _check_bn_momentum(bn_momentum)
        if combine not in ("sum", "concat"):
            raise ValueError(f"combine={combine!r}; allowed: 'sum' (the paper's), 'concat'")
        if coding not in ("loss", "detach"):
            raise ValueError(f"coding={coding!r}; allowed: 'loss' (the paper's), 'detach'")
        if combine == "concat" and c_out % n:
            raise ValueError(f"combine='concat' needs C_out divisible by N, got C_out={c_out}, N={n}")
        if not 0.0 <= p_drop < 1.0:  # nan fails too
            raise ValueError(f"p_drop={p_drop}; allowed: 0 <= p_drop < 1")
        if scheme is not None and scheme.N != n:
            raise ValueError(f"the coding scheme has codewords of {scheme.N} bits; this block has N={n} subNNs")
        self.n, self.d, self.c_out = n, d, c_out
        self.scheme = scheme
        self.coded = scheme is not None if normalize is None else normalize
        self.norm_paths = norm_paths or n
        self.p_drop, self.combine, self.coding, self.skip = p_drop, combine, coding, skip
        self.index = None  # position among the network's coded blocks, set by the network
        if scheme is not None:  # on the model's device; not in the state dict (the scheme is data)
            self.register_buffer("codewords", scheme.codewords(), persistent=False)
        hidden = n * d
        self.conv1 = conv1x1(c_in, hidden)
        self.bn1 = nn.BatchNorm2d(hidden, momentum=bn_momentum)
        self.conv2 = conv3x3(hidden, hidden, stride, groups=n)
        self.bn2 = nn.BatchNorm2d(hidden, momentum=bn_momentum)
        self.conv3 = conv1x1(hidden, c_out) if combine == "sum" else nn.Conv2d(hidden, c_out, 1, groups=n, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out, momentum=bn_momentum)
        self.downsample = None
        if skip and (stride != 1 or c_in != c_out):
            self.downsample = nn.Sequential(conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out, momentum=bn_momentum))

    @property
    def n_act(self) -> int:
        return self.scheme.n_act if self.scheme is not None else self.n

    def hidden(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)))

    def path_energies(self, h):
        """E(t_n) of Eq. 2 for every path, [B, N] float32, without materialising the paths."""
        b, _, hh, ww = h.shape
        dtype = torch.promote_types(h.dtype, torch.float32)  # float32 under bf16 autocast, float64 stays
        with torch.autocast(device_type=h.device.type, enabled=False):
            hn = h.to(dtype).reshape(b, self.n, self.d, hh * ww)
            if self.combine == "sum":
                w = self.conv3.weight.to(dtype).reshape(self.c_out, self.n, self.d)
                gram = torch.einsum("cnd,cne->nde", w, w)  # W_n^T W_n, [N, d, d]
                second = torch.einsum("bndp,bnep->bnde", hn, hn)  # sum_p h h^T, [B, N, d, d]
                return torch.einsum("bnde,nde->bn", second, gram) / (self.c_out * hh * ww)
            # concat: path n owns C_out/N output channels; these are cheap to materialise
            w = self.conv3.weight.to(dtype).reshape(self.n, self.c_out // self.n, self.d)
            t = torch.einsum("nkd,bndp->bnkp", w, hn)
            return t.pow(2).mean(dim=(2, 3))

    def _per_path(self, h, factor):
        """h [B, N*d, H, W] times a per-sample, per-path factor [B, N] (or [B, 1]), without copying the mask d times."""
        b, _, hh, ww = h.shape
        f = factor.to(h.dtype)[:, :, None, None, None]
        return (h.view(b, -1, self.d, hh, ww) * f).view(b, -1, hh, ww)

    def forward(self, x, keep=None, drop=None, targets=None):
        """Returns (output, normalized energies [B, N] or None).

        keep: [B, N] 0/1, subNNs removed before normalization. drop: [B, N] DropSubNN mask,
        already scaled by 1/(1-p). targets: needed by ``coding="detach"`` in training.
        """
        identity = x if self.downsample is None else self.downsample(x)
        h = self.hidden(x)
        if keep is not None:
            h = self._per_path(h, keep)
        active = None
        if self.scheme is not None and self.coding == "detach" and self.training and targets is not None:
            # appendix E: inactive subNNs see no gradient, through the normalizer either
            active = self.codewords[targets]
            h = self._per_path(h, active) + self._per_path(h.detach(), 1 - active)
        energies = None
        factor = drop
        if self.coded:
            raw = self.path_energies(h)
            mean = (raw.sum(dim=1) / self.norm_paths).clamp_min(ENERGY_EPS)
            energies = raw / mean[:, None]  # E(t̄_n), Eq. 3: sums to N over the paths
            # conv3 is linear: scaling its input by Eq. 3's factor (and the DropSubNN mask) scales its
            # output, and saves keeping a second C_out-wide tensor for the backward pass
            scale = mean.rsqrt()[:, None]
            factor = scale if drop is None else drop * scale
        if factor is not None:
            h = self._per_path(h, factor)
        if active is None:
            out = self.conv3(h)
        else:
            out = self.conv3(self._per_path(h, active)) + F.conv2d(
                self._per_path(h, 1 - active), self.conv3.weight.detach(), groups=self.conv3.groups)
        out = self.bn3(out)
        if self.skip:
            out = out + identity
        return F.relu(out), energies

    @torch.no_grad()
    def subnn_outputs(self, x):
        """The energy-normalized path outputs t̄_n, [B, N, C, H, W] (for the analyses only: N times ResNeXt's memory)."""
        h = self.hidden(x)
        b, _, hh, ww = h.shape
        hn = h.float().reshape(b, self.n, self.d, hh, ww)
        if self.combine == "sum":
            w = self.conv3.weight.float().reshape(self.c_out, self.n, self.d)
            t = torch.einsum("cnd,bndhw->bnchw", w, hn)
        else:
            w = self.conv3.weight.float().reshape(self.n, self.c_out // self.n, self.d)
            t = torch.einsum("nkd,bndhw->bnkhw", w, hn)
        if self.coded:
            energy = t.pow(2).mean(dim=(2, 3, 4))
            t = t * (energy.sum(1) / self.norm_paths).clamp_min(ENERGY_EPS).rsqrt()[:, None, None, None, None]
        return t


class CodedResNeXt(nn.Module):
    """A (Coded) ResNeXt built from an :class:`Arch` stage table by one loop.

    With every stage at r = 1 it is plain ResNeXt (the paper's baseline, "control").
    """

    def __init__(self, arch: Arch, *, p_drop=0.1, loss_exponent=4, combine="sum", coding="loss",
                 skip=True, bn_momentum=0.1):
        super().__init__()
        check_exponent(loss_exponent)
        _check_sizes(num_classes=arch.num_classes, in_channels=arch.in_channels, stem_width=arch.stem_width)
        _check_bn_momentum(bn_momentum)
        if not 0.0 <= p_drop < 1.0:
            raise ValueError(f"p_drop={p_drop}; allowed: 0 <= p_drop < 1")
        self.arch = arch
        self.num_classes = arch.num_classes
        self.loss_exponent = loss_exponent
        if arch.stem == "cifar":
            self.stem = nn.Sequential(conv3x3(arch.in_channels, arch.stem_width),
                                      nn.BatchNorm2d(arch.stem_width, momentum=bn_momentum), nn.ReLU(inplace=True))
        elif arch.stem == "imagenet":
            self.stem = nn.Sequential(nn.Conv2d(arch.in_channels, arch.stem_width, 7, stride=2, padding=3, bias=False),
                                      nn.BatchNorm2d(arch.stem_width, momentum=bn_momentum), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, stride=2, padding=1))
        else:
            raise ValueError(f"stem={arch.stem!r}; allowed: 'cifar', 'imagenet'")
        blocks, c_in = [], arch.stem_width
        for st in arch.stages:
            scheme = scheme_for(arch.num_classes, st.n, st.n_act, arch.dataset) if st.coded else None
            for i in range(st.depth):
                blocks.append(ResNeXtBlock(c_in, st.c_out, st.d, st.n, st.stride if i == 0 else 1, scheme,
                                           p_drop=p_drop if scheme is not None else 0.0, combine=combine,
                                           coding=coding, skip=skip, bn_momentum=bn_momentum))
                c_in = st.c_out
        self.blocks = nn.ModuleList(blocks)
        # no bias, as every network of the authors (CIFAR and ImageNet): the binary classifier of a
        # class (F-binary) is then its row of weights alone
        self.head = nn.Linear(c_in, arch.num_classes, bias=False)
        self.coded_blocks = [b for b in self.blocks if b.coded]
        for i, b in enumerate(self.coded_blocks):
            b.index = i
        self.plain = not self.coded_blocks

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero-init of each block's last BN (Goyal et al. 2017, as in the paper's §1.1): every residual
        # branch starts as the identity. Without skip connections that would cut the signal, so skip it.
        if skip:
            for b in self.blocks:
                nn.init.zeros_(b.bn3.weight)

    def forward(self, x, targets=None, subnn_mask=None) -> ModelOutput:
        """``subnn_mask``: {coded block index: [B, N] 0/1}, subNNs to keep (see coded_lib.decoders)."""
        if subnn_mask:
            bad = [k for k in subnn_mask if not 0 <= k < len(self.coded_blocks)]
            if bad:
                raise ValueError(f"subnn_mask names coded blocks {bad}; this model has {len(self.coded_blocks)} (0..{len(self.coded_blocks) - 1})")
        out = self.stem(x)
        energies, code_loss = [], x.new_zeros((), dtype=torch.float32)
        drop, prev = None, None
        for b in self.blocks:
            if not b.coded:
                out, _ = b(out)
                prev = None
                continue
            if self.training and b.p_drop > 0:
                # DropSubNN: consecutive blocks of one scheme share the mask the first one draws
                if prev is None or prev.scheme is not b.scheme:
                    survive = torch.rand(x.shape[0], b.n, device=x.device) >= b.p_drop
                    drop = survive.float() / (1.0 - b.p_drop)
            else:
                drop = None
            keep = subnn_mask.get(b.index) if subnn_mask else None
            out, e = b(out, keep=keep, drop=drop, targets=targets)
            energies.append(e)
            if targets is not None and b.coding == "loss" and b.scheme is not None:
                words = F.embedding(targets, b.codewords)  # a target outside 0..K-1 fails, never wraps around
                code_loss = code_loss + coding_loss(e, words, b.n_act / b.n, self.loss_exponent)
            prev = b
        logits = self.head(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
        return ModelOutput(logits=logits, code_loss=code_loss, energies=energies)


# --- Table 1 as data -------------------------------------------------------------------------

def _stages(rows):
    return tuple(Stage(*row) for row in rows)


ARCHS = {
    # name, c_out, d, N, N_act, depth, stride
    "coded_resnext29_cifar10": Arch("cifar", 64, _stages([
        ("c2", 256, 11, 10, 10, 3, 1), ("c3", 512, 22, 10, 5, 3, 2), ("c4", 1024, 44, 10, 3, 3, 2)]),
        num_classes=10, dataset="cifar10"),
    "coded_resnext29_cifar100": Arch("cifar", 64, _stages([
        ("c2", 256, 6, 20, 20, 3, 1), ("c3", 512, 12, 20, 8, 3, 2), ("c4", 1024, 24, 20, 4, 3, 2)]),
        num_classes=100, dataset="cifar100"),
    "coded_resnext50_imagenet": Arch("imagenet", 64, _stages([
        ("c2", 256, 4, 32, 32, 3, 1), ("c3", 512, 8, 32, 32, 4, 2), ("c4", 1024, 16, 32, 16, 6, 2),
        ("c5", 2048, 32, 32, 8, 3, 2)]),
        num_classes=1000, dataset="imagenet"),
    # Ours, for 28x28 grey 10-class data (Fashion-MNIST): the CIFAR-10 layout at a fraction of the
    # width and depth, with 4 coded blocks on the paper's CIFAR-10 schemes (5/10 then 3/10).
    # Widths are multiples of N = 10 so that the concatenation variant (T-concat) also builds.
    # c2 strides to 14x14: at 28x28 the grouped 3x3 convs' backward dominates a CPU step (profiled:
    # 3x the multiply-adds but ~10x the time), and 28x28 grey images do not need that resolution.
    "coded_resnext_mini": Arch("cifar", 16, _stages([
        ("c2", 40, 2, 10, 10, 1, 2), ("c3", 80, 4, 10, 5, 2, 2), ("c4", 160, 8, 10, 3, 2, 2)]),
        num_classes=10, in_channels=1, dataset="cifar10"),
}


def _plain(arch: Arch) -> Arch:
    return replace(arch, stages=tuple(replace(s, n_act=s.n) for s in arch.stages))


def _parse_ratio(ratio, stage: Stage) -> int:
    """'3/10' (or a number such as 0.3) for a stage with N = 10 -> N_act = 3."""
    try:
        frac = Fraction(ratio) if isinstance(ratio, str) else Fraction(ratio).limit_denominator(1000)
    except (ValueError, TypeError):
        frac = None
    if isinstance(ratio, str) and "/" in ratio and ratio.split("/")[-1].strip() != str(stage.n):
        frac = None
    n_act = frac * stage.n if frac is not None else None
    if n_act is None or n_act.denominator != 1 or not 1 <= n_act <= stage.n:
        raise ValueError(f"ratio {ratio!r} for stage {stage.name}: allowed are 'N_act/{stage.n}' with 1 <= N_act <= {stage.n}")
    return int(n_act)


def _with_ratios(arch: Arch, ratios: dict) -> Arch:
    names = [s.name for s in arch.stages]
    stages = list(arch.stages)
    for name, ratio in ratios.items():
        if name not in names:
            raise ValueError(f"ratios names stage {name!r}; this architecture has stages {names}")
        i = names.index(name)
        stages[i] = replace(stages[i], n_act=_parse_ratio(ratio, stages[i]))
    return replace(arch, stages=tuple(stages))


def _build(arch: Arch, num_classes=None, in_channels=None, ratios=None, **kwargs) -> CodedResNeXt:
    if num_classes is not None:
        arch = replace(arch, num_classes=num_classes, dataset=arch.dataset if num_classes == arch.num_classes else None)
    if in_channels is not None:
        arch = replace(arch, in_channels=in_channels)
    if ratios:
        arch = _with_ratios(arch, ratios)
    return CodedResNeXt(arch, **kwargs)


def coded_resnext29_cifar10(**kwargs) -> CodedResNeXt:
    """Coded ResNeXt-29 (10x11d) for CIFAR-10, Table 1: ratios 10/10, 5/10, 3/10 in c2, c3, c4."""
    return _build(ARCHS["coded_resnext29_cifar10"], **kwargs)


def resnext29_cifar10(**kwargs) -> CodedResNeXt:
    """ResNeXt-29 (10x11d), the CIFAR-10 baseline: the coded network with r = 1 everywhere."""
    return _build(_plain(ARCHS["coded_resnext29_cifar10"]), **kwargs)


def coded_resnext29_cifar100(**kwargs) -> CodedResNeXt:
    """Coded ResNeXt-29 (20x6d) for CIFAR-100, Table 1: ratios 20/20, 8/20, 4/20."""
    return _build(ARCHS["coded_resnext29_cifar100"], **kwargs)


def resnext29_cifar100(**kwargs) -> CodedResNeXt:
    """ResNeXt-29 (20x6d), the CIFAR-100 baseline."""
    return _build(_plain(ARCHS["coded_resnext29_cifar100"]), **kwargs)


def coded_resnext50_imagenet(**kwargs) -> CodedResNeXt:
    """Coded ResNeXt-50 (32x4d) for ImageNet, Table 1: ratios 32/32, 32/32, 16/32, 8/32 in c2-c5."""
    return _build(ARCHS["coded_resnext50_imagenet"], **kwargs)


def resnext50_imagenet(**kwargs) -> CodedResNeXt:
    """ResNeXt-50 (32x4d), identical in layout to torchvision's ``resnext50_32x4d``."""
    return _build(_plain(ARCHS["coded_resnext50_imagenet"]), **kwargs)


def coded_resnext_mini(**kwargs) -> CodedResNeXt:
    """A small Coded ResNeXt for 28x28 grey images with 10 classes (our CPU default, not in the paper)."""
    return _build(ARCHS["coded_resnext_mini"], **kwargs)


def resnext_mini(**kwargs) -> CodedResNeXt:
    """The baseline twin of :func:`coded_resnext_mini` (r = 1 everywhere)."""
    return _build(_plain(ARCHS["coded_resnext_mini"]), **kwargs)


MODELS = {f.__name__: f for f in (coded_resnext29_cifar10, resnext29_cifar10, coded_resnext29_cifar100,
                                  resnext29_cifar100, coded_resnext50_imagenet, resnext50_imagenet,
                                  coded_resnext_mini, resnext_mini)}


def build_model(name: str, **overrides) -> CodedResNeXt:
    """Build a model of :data:`MODELS` by name; ``overrides`` go to the builder (see CodedResNeXt)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {sorted(MODELS)}")
    return MODELS[name](**overrides)


def count_parameters(*modules: nn.Module) -> int:
    """Number of parameters of the given modules together (the one count used everywhere: T-arch,
    T-cost, the binary classifiers' fractions). A parameter shared by two modules counts once."""
    return sum(p.numel() for p in {id(p): p for m in modules for p in m.parameters()}.values())


def stage_parameters(model: CodedResNeXt) -> dict[str, int]:
    """Parameters per stage (T-arch), plus the stem and the head."""
    counts = {"stem": count_parameters(model.stem)}
    i = 0
    for st in model.arch.stages:
        counts[st.name] = count_parameters(*model.blocks[i:i + st.depth])
        i += st.depth
    counts["head"] = count_parameters(model.head)
    return counts
