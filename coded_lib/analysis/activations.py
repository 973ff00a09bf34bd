"""F-act: how strongly a subNN responds to samples of its own classes versus the others.

For a coded block, the energy-normalized output t̄_n of each subNN (Eq. 3) is split by whether the
sample's class has the subNN active in the block's codeword; the paper plots |t̄_n| for the first
five subNNs of the second block of c4 (its "s3"), log y-axis: active ones have heavier tails.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .inference import _batches, eval_mode


def subnn_output_distribution(model, loader, block: int, subnns=range(5), values_per_sample: int | None = 16,
                              max_rows: int | None = 500_000, device="cpu", seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """|t̄_n| of the chosen subNNs of coded block ``block``, for active and inactive samples.

    The block's input is caught by a forward hook during a normal forward pass and fed to
    ``block.subnn_outputs`` ([B, N, C, H, W]). To keep the frame small, ``values_per_sample``
    entries (of C*H*W) are drawn at random per sample and subNN; None keeps them all.

    Returns (values, summary): ``summary`` per (subnn, active): count, mean, p99 (99th
    percentile), max of the kept values (a uniform random subsample, so unbiased for the mean);
    ``values`` a long frame subnn, active (bool), value for plotting, cut at random to
    ``max_rows`` rows (None: no cut).
    """
    if not 0 <= block < len(model.coded_blocks):
        raise ValueError(f"block={block}; this model has coded blocks 0..{len(model.coded_blocks) - 1}")
    b = model.coded_blocks[block]
    subnns = [int(n) for n in subnns]
    bad = [n for n in subnns if not 0 <= n < b.n]
    if bad:
        raise ValueError(f"subnns {bad} out of range; block {block} has subNNs 0..{b.n - 1}")
    words = b.scheme.codewords().bool()
    gen = torch.Generator().manual_seed(seed)
    caught = {}
    handle = b.register_forward_hook(lambda module, args, output: caught.update(x=args[0]))
    frames = []
    try:
        with eval_mode(model):
            model.to(device)
            for x, y in _batches(loader, device):
                model(x)
                t = b.subnn_outputs(caught.pop("x"))[:, subnns].abs().flatten(2).cpu()  # [B, n, C*H*W]
                if values_per_sample is not None and values_per_sample < t.shape[2]:
                    pick = torch.rand(t.shape, generator=gen).argsort(dim=2)[:, :, :values_per_sample]
                    t = t.gather(2, pick)
                active = words[y.cpu()][:, subnns]  # [B, n]
                for j, n in enumerate(subnns):
                    frames.append(pd.DataFrame({
                        "subnn": n,
                        "active": active[:, j, None].expand_as(t[:, j]).flatten().numpy(),
                        "value": t[:, j].flatten().numpy()}))
    finally:
        handle.remove()
    values = pd.concat(frames, ignore_index=True)
    summary = values.groupby(["subnn", "active"]).value.agg(
        count="count", mean="mean", p99=lambda v: np.percentile(v, 99), max="max").reset_index()
    if max_rows is not None and len(values) > max_rows:
        values = values.sample(n=max_rows, random_state=seed).sort_index().reset_index(drop=True)
    return values, summary
