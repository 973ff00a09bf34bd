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
from .losses import _as, check_exponent, coding_loss

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


def _check_p_drop(p_drop) -> None:
    if not 0.0 <= p_drop < 1.0:  # nan fails too
        raise ValueError(f"p_drop={p_drop}; allowed: 0 <= p_drop < 1")


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


def conv3x3(c_in: int, c_out: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, groups=groups, bias=False)


class CodedConv(torch.autograd.Function):
    """The coded half of a block, Eq. 2-3 then conv3, as one autograd node with a hand-written
    backward. Written with autograd's operators, the energies, the normalization and the masks took
    ~100 small operators per block and training step, on which a GPU waits at the paper's batch
    sizes (issue 13); here they take 30 besides conv3's own (12 forward, 18 backward, where the network
    gives the Gram matrices), and every tensor keeps h's memory format (channels-last).

    ``apply(h, weight, keep, drop, active, n, norm_paths[, gram, wc, pixels])``: h [B, N*d, H, W], the hidden activation;
    weight, conv3's: dense [C_out, N*d, 1, 1] (the paper's sum) or grouped [C_out, d, 1, 1] (T-concat);
    keep [B, N] 0/1 (subNNs removed before the normalization) or None; drop [B, N] or [B, N, 1, 1, 1]
    (DropSubNN, scaled by 1/(1-p)) or None; active [B, N] 0/1 or None: T-detach, the outputs of the
    paths where it is 0 pass no gradient; gram, wc: :func:`_grams` for P = pixels (computed here if not
    given: the network gives those of a stage's blocks at once). Returns ``(conv3(h * s), E)``, s = keep * drop / sqrt(m)
    per sample and path, and E [B, N, 1, 1, 1] float32, the normalized energies E(t̄_n) = E(t_n) / m.

    With W_n path n's slice of conv3 (k = C_out rows, or C_out/N for T-concat) and P = H*W pixels,
    E(t_n) = mean over t_n's k*P entries of (W_n h_n)^2 = sum_p h_n^T G_n h_n with the Gram matrix
    G_n = W_n^T W_n / (k P): a grouped 1x1 conv with d x d weights, the paths never materialised.
    m = max(sum_n keep_n^2 E(t_n) / norm_paths, ENERGY_EPS) is Eq. 3's mean energy; conv3 being
    linear, scaling its input by s is scaling each path's output t_n.
    """

    @staticmethod
    def forward(ctx, h, weight, keep, drop, active, n, norm_paths, gram=None, wc=None, pixels=None):
        b, _, hh, ww = h.shape
        dtype = _energy_dtype(h)
        summed = weight.shape[1] == h.shape[1]
        with torch.autocast(h.device.type, enabled=False):
            spec = "knd" if summed else "nkd"
            # given by the network for a run of like blocks at once (checked: for P = H*W pixels, in this dtype)
            if gram is None:
                gram, wc = _grams(weight, n, summed, hh * ww, dtype)
            elif pixels != hh * ww or gram.dtype != dtype:
                raise ValueError(f"grams for {pixels} pixels in {gram.dtype}; this block has {hh * ww} in {dtype}")
            hf = _as(h, dtype)
            h5 = hf.reshape(b, n, -1, hh, ww)
            g = F.conv2d(hf, gram, groups=n)  # G_n h_n, laid out as h
            raw = (h5 * g.view(h5.shape)).sum(dim=(2, 3, 4), keepdim=True)  # E(t_n), Eq. 2: [B, N, 1, 1, 1]
            kept = None if keep is None else _as(keep, dtype).view(b, n, 1, 1, 1)
            if kept is not None:
                raw = raw * (kept * kept)  # the path zeroed before Eq. 2
            mean_raw = raw.mean(1, keepdim=True) if norm_paths == n else raw.sum(1, keepdim=True) / norm_paths
            mean = mean_raw.clamp_min(ENERGY_EPS)
            energies = raw / mean  # E(t̄_n), Eq. 3: sums to norm_paths over the paths
            scale = mean.rsqrt()
            for mask in (kept, drop):
                if mask is not None:
                    scale = scale * _as(mask if mask.dim() == 5 else mask.view(b, n, 1, 1, 1), dtype)
            hv = h5 if hf is h else h.reshape(h5.shape)  # h as [B, N, d, H, W], in its own dtype
            hs = (hv * _as(scale, h.dtype)).view(h.shape)
            out = F.conv2d(hs, _as(weight, h.dtype), groups=1 if summed else n)
        ctx.save_for_backward(h, hv, hs, weight, wc, gram, energies, mean, mean_raw >= ENERGY_EPS, scale, kept,
                              None if active is None else _as(active, h.dtype).view(b, n, 1, 1, 1))
        ctx.spec, ctx.n, ctx.norm_paths, ctx.groups = spec, n, norm_paths, 1 if summed else n
        return out, energies

    @staticmethod
    def backward(ctx, grad_out, grad_energies):
        """With a_n = sum over path n's entries of dL/d(h s) * h (the gradient of its factor s_n),
        dL/dm = -(sum_n a_n s_n / 2 + sum_n gE_n E_n) / m (zero where the floor holds m),
        r_n = dL/dE(t_n) = keep_n^2 (gE_n / m + dL/dm / norm_paths),
        dL/dh = dL/d(h s) * s + 2 r G h, dL/dG_n = sum r_n h_n h_n^T, dL/dW_n = 2 W_n dL/dG_n / (k P)
        (+ conv3's own weight gradient)."""
        h, hv, hs, weight, wc, gram, energies, mean, live, scale, kept, active = ctx.saved_tensors
        dtype, n = energies.dtype, ctx.n
        with torch.autocast(h.device.type, enabled=False):
            if active is not None:  # T-detach: the inactive outputs give conv3's weight no gradient either
                hs = (hs.view(*active.shape[:2], -1, *hs.shape[2:]) * active).view(hs.shape)
            grad_hs, grad_w, _ = torch.ops.aten.convolution_backward(
                grad_out, hs, _as(weight, h.dtype), None, [1, 1], [0, 0], [1, 1], False, [0, 0], ctx.groups,
                [True, True, False])
            hf = _as(h, dtype)
            h5 = hv if hf is h else hf.view(hv.shape)
            g5 = grad_hs.view(h5.shape)
            if active is not None:
                g5 = g5 * active
            a = (g5 * hv).sum(dim=(2, 3, 4), keepdim=True, dtype=dtype)
            ge = grad_energies
            dm = torch.addcmul(ge * energies, a, scale, value=0.5).sum(dim=1, keepdim=True)
            r = torch.addcmul(ge, dm, live, value=-1 / ctx.norm_paths) / mean  # live: clamp_min's gradient
            if kept is not None:
                r = r * (kept * kept)
            # one grouped-conv backward gives both G (r h) = r G h (G is symmetric) and sum r h h^T
            grad_h, grad_gram, _ = torch.ops.aten.convolution_backward(
                (h5 * r).view(h.shape), hf, gram, None, [1, 1], [0, 0], [1, 1], False, [0, 0], n,
                [True, True, False])
            grad_h = torch.add((g5 * _as(scale, g5.dtype)).view(h.shape), grad_h, alpha=2)
            spec = ctx.spec
            grad_gram = torch.einsum(f"{spec.replace('d', 'e')},nde->{spec}", wc, grad_gram.view(n, -1, gram.shape[1]))
            grad_w = torch.add(grad_w, grad_gram.reshape(grad_w.shape), alpha=2)
        return _as(grad_h, h.dtype), _as(grad_w, weight.dtype), None, None, None, None, None, None, None, None


def _grams(weight, n, summed, pixels, dtype):
    """(G, W / (k P)) of CodedConv: the Gram matrices as a grouped 1x1 conv weight [N*d, d, 1, 1] and
    conv3's weight as [C_out, N, d] (or [N, C_out/N, d], T-concat), both divided by k P. ``weight``
    may have leading dimensions (the conv3 weights of several blocks stacked), kept in front of both."""
    lead = weight.shape[:-4]
    w = _as(weight, dtype)
    w = w.view(*lead, w.shape[-4], n, -1) if summed else w.view(*lead, n, -1, w.shape[-3])
    spec = "knd" if summed else "nkd"
    wc = w / (w.shape[-3 if summed else -2] * pixels)  # W_n / (k P)
    gram = torch.einsum(f"...{spec},...{spec.replace('d', 'e')}->...nde", w, wc)
    return gram.view(*lead, -1, w.shape[-1], 1, 1), wc


def _energy_dtype(t: torch.Tensor):
    """The energies' dtype for activations t: float64 with float64, else float32 (also under bf16)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


class ResNeXtBlock(nn.Module):
    """A (Coded) ResNeXt block, Fig. 1 of the paper.

    ``scheme`` None makes a plain ResNeXt block. ``combine="concat"`` is the paper's "what if"
    (T-concat): each path maps to C_out/N channels and the outputs are concatenated.
    ``coding="detach"`` is appendix E's T-detach as the authors' code does it: in training, the
    gradients on the outputs of the subNNs inactive for a sample's class are blocked after the
    energy normalization; the coding loss stays (pass ``mu=0`` for detaching *instead of* it).
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
        _check_p_drop(p_drop)
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

    def hidden_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) of the hidden activation (conv2: 3x3, padding 1) for an input of height x width."""
        stride = self.conv2.stride[0]
        return (height - 1) // stride + 1, (width - 1) // stride + 1

    def hidden(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)))

    def _per_path(self, h, factor):
        """h [B, N*d, H, W] times a per-sample, per-path factor [B, N] (or [B, 1]), without copying the mask d times."""
        b, _, hh, ww = h.shape
        f = factor.to(h.dtype).view(b, -1, 1, 1, 1)
        return (h.view(b, -1, self.d, hh, ww) * f).view(b, -1, hh, ww)

    def forward(self, x, keep=None, drop=None, targets=None, grams=None):
        """Returns (output, normalized energies [B, N, 1, 1, 1] or None: the network flattens all
        blocks' at once, one operator instead of one per block).

        keep: [B, N] 0/1, subNNs removed before normalization. drop: [B, N] (or [B, N, 1, 1, 1])
        DropSubNN mask, already scaled by 1/(1-p). targets: needed by ``coding="detach"`` in training.
        grams: (G, W / (k P), P) of conv3, computed by the network for several blocks at once (see _grams).
        """
        identity = x if self.downsample is None else self.downsample(x)
        h = self.hidden(x)
        energies = None
        if self.coded:
            active = None
            if self.coding == "detach" and self.scheme is not None and self.training and targets is not None:
                # the authors' T-detach (their ImageNet code's mask_grads): after the energy normalization,
                # the outputs of the subNNs inactive for the sample's class pass no gradient (to their
                # weights, or to conv3's); the gradient still reaches them through Eq. 3's mean energy
                # (it divides the active outputs too) and through the coding loss, which is kept
                active = F.embedding(targets, self.codewords)
            out, energies = CodedConv.apply(h, self.conv3.weight, keep, drop, active, self.n, self.norm_paths, *(grams or ()))
        else:
            for factor in (keep, drop):
                if factor is not None:
                    h = self._per_path(h, factor)
            out = self.conv3(h)
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
    ``schemes``: {stage name: CodingScheme or its codeword strings} replaces the coding scheme of
    those coded stages (e.g. the semantic schemes of coded_lib.beyond.semantic); their shape must match.
    """

    def __init__(self, arch: Arch, *, p_drop=0.1, loss_exponent=4, combine="sum", coding="loss",
                 skip=True, bn_momentum=0.1, schemes=None):
        super().__init__()
        check_exponent(loss_exponent)
        _check_sizes(num_classes=arch.num_classes, in_channels=arch.in_channels, stem_width=arch.stem_width)
        _check_bn_momentum(bn_momentum)
        _check_p_drop(p_drop)
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
        given = _given_schemes(arch, schemes)
        for st in arch.stages:
            scheme = given.get(st.name) or (scheme_for(arch.num_classes, st.n, st.n_act, arch.dataset) if st.coded else None)
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
        # every block's codewords side by side, [K, L*N], and its ratio N_act/N for each of its N
        # columns: the coding loss of all blocks at once (where their N agree, as in the paper's networks)
        stackable = self.coded_blocks and len({b.n for b in self.coded_blocks}) == 1
        self.register_buffer("stacked_codewords", torch.cat([b.codewords for b in self.coded_blocks], 1)
                             if stackable else None, persistent=False)
        self.register_buffer("stacked_ratios", torch.tensor([b.n_act / b.n for b in self.coded_blocks for _ in range(b.n)])
                             if stackable else None, persistent=False)

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
        energies, drop, prev, grams = [], None, None, {}
        for i, b in enumerate(self.blocks):
            if not b.coded:
                out, _ = b(out)
                prev = None
                continue
            if self.training and b.p_drop > 0:
                # DropSubNN: consecutive blocks of one scheme share the mask the first one draws;
                # dropout of ones is the mask, 0 or 1/(1-p), in one operator
                if prev is None or prev.scheme is not b.scheme:
                    drop = F.dropout(out.new_ones(out.shape[0], b.n, 1, 1, 1, dtype=torch.float32), b.p_drop)
            else:
                drop = None
            keep = subnn_mask.get(b.index) if subnn_mask else None
            if isinstance(b, ResNeXtBlock) and b.index not in grams:
                grams.update(self._run_grams(self._like_run(i), out))
            out, e = b(out, keep=keep, drop=drop, targets=targets, **({"grams": grams[b.index]} if b.index in grams else {}))
            energies.append(e)
            prev = b
        logits = self.head(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
        if not energies:
            return ModelOutput(logits=logits, code_loss=x.new_zeros((), dtype=torch.float32))
        flat = torch.cat(energies, 1).flatten(1)  # [B, sum of the blocks' N]
        energies = list(flat.split([e.shape[1] for e in energies], 1))
        return ModelOutput(logits=logits, code_loss=self.code_loss(flat, energies, targets), energies=energies)

    def _like_run(self, i):
        """Block i and the coded blocks right after it with like conv3s and inputs of its size (a stage's)."""
        run = [self.blocks[i]]
        for b in self.blocks[i + 1:]:
            if not (isinstance(b, ResNeXtBlock) and b.coded and b.conv2.stride == (1, 1)
                    and (b.n, b.combine, b.conv3.weight.shape) == (run[0].n, run[0].combine, run[0].conv3.weight.shape)):
                break
            run.append(b)
        return run

    @staticmethod
    def _run_grams(run, x):
        """{block index: CodedConv's (G, W / (k P), P)} for a run of blocks with like conv3s, x the first one's
        input: their Gram matrices at once, one einsum for the run (a lone block computes its own)."""
        if len(run) == 1:
            return {}
        hh, ww = run[0].hidden_size(*x.shape[2:])
        pixels, dtype = hh * ww, _energy_dtype(x)
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):  # CodedConv gives conv3's gradient
            gram, wc = _grams(torch.stack([b.conv3.weight for b in run]), run[0].n, run[0].combine == "sum", pixels, dtype)
        return {b.index: (g, w, pixels) for b, g, w in zip(run, gram, wc)}

    def code_loss(self, flat, energies, targets):
        """Eq. 5 summed over the coded blocks (0 without targets), from their energies side by side
        (``flat`` [B, L*N]) or one by one (``energies``, where the blocks' N differ)."""
        if targets is None or not self.coded_blocks:
            return flat.new_zeros((), dtype=torch.float32)
        if self.stacked_codewords is None:
            return sum(coding_loss(e, F.embedding(targets, b.codewords), b.n_act / b.n, self.loss_exponent)
                       for e, b in zip(energies, self.coded_blocks))
        # a target outside 0..K-1 fails in F.embedding, never wraps around
        words = F.embedding(targets, self.stacked_codewords)
        # L times the mean over [B, L*N] is the sum over the L blocks of each one's mean over [B, N]
        return coding_loss(flat, words, self.stacked_ratios, self.loss_exponent) * len(energies)


def _given_schemes(arch: Arch, schemes) -> dict:
    """{stage name: CodingScheme} from CodedResNeXt's ``schemes`` argument, checked against the stages."""
    out = {}
    stages = {st.name: st for st in arch.stages}
    for name, scheme in (schemes or {}).items():
        st = stages.get(name)
        if st is None or not st.coded:
            raise ValueError(f"schemes names stage {name!r}; allowed: the coded stages {[s.name for s in arch.stages if s.coded]}")
        if not isinstance(scheme, CodingScheme):
            scheme = CodingScheme.from_strings(scheme)
        if (scheme.K, scheme.N, scheme.n_act) != (arch.num_classes, st.n, st.n_act):
            raise ValueError(f"the scheme for stage {name} has K={scheme.K}, N={scheme.N}, N_act={scheme.n_act}; "
                             f"the stage needs K={arch.num_classes}, N={st.n}, N_act={st.n_act}")
        out[name] = scheme
    return out


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
