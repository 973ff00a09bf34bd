"""Smoke test of benchmarks/run.py, and the check that its naive block computes what coded_lib's does.

The naive block materialises every path output t_n and takes E(t_n) as a plain mean of squares
(Eq. 2); coded_lib's block never forms t_n and uses the Gram form. Equal outputs, energies and
gradients mean the benchmark compares two implementations of the same network.
"""
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import run  # noqa: E402
from benchmarks.naive_block import NaiveCodedBlock, naive_model  # noqa: E402
from coded_lib.models import build_model  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _coded_block(model):
    return next(b for b in model.blocks if b.coded)


def _model():
    torch.manual_seed(0)
    m = build_model("coded_resnext_mini")
    # random BN statistics and a non-zero last BN, so that every term of the block matters
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 2.0)
    return m.double().eval()


@pytest.fixture(scope="module")
def model():
    return _model()


def test_naive_block_equals_coded_block(model):
    block = _coded_block(model)
    naive = NaiveCodedBlock(block).double().eval()
    torch.manual_seed(1)
    x = torch.randn(3, block.conv1.in_channels, 14, 14, dtype=torch.float64)
    keep = torch.ones(3, block.n, dtype=torch.float64)
    keep[0, 2] = keep[1, 7] = 0
    drop = (torch.rand(3, block.n) > 0.3).double() / 0.7
    for kw in ({}, {"keep": keep}, {"keep": keep, "drop": drop}):
        out, energies = block(x, **kw)
        energies = energies.flatten(1)  # a block's energies are [B, N, 1, 1, 1]
        out_naive, energies_naive = naive(x, **kw)
        energies_naive = energies_naive.flatten(1)
        torch.testing.assert_close(out_naive, out, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(energies_naive, energies, rtol=1e-10, atol=1e-10)
    # Eq. 3 from the materialised paths, independently of both blocks' code
    h = block.hidden(x)
    t = torch.einsum("cnd,bndhw->bnchw", block.conv3.weight.reshape(block.c_out, block.n, block.d),
                     h.reshape(3, block.n, block.d, *h.shape[2:]) * keep[:, :, None, None, None])
    e = t.pow(2).mean(dim=(2, 3, 4))
    torch.testing.assert_close(naive(x, keep=keep)[1].flatten(1), block.n * e / e.sum(1, keepdim=True))


def _train_step(m, x, y):
    m.train()
    m.zero_grad()
    torch.manual_seed(2)  # the same DropSubNN masks in both models
    out = m(x, targets=y)
    (F.cross_entropy(out.logits, y) + 6 * out.code_loss).backward()
    return out, {k: p.grad for k, p in m.named_parameters()}


def test_naive_model_same_loss_and_gradients():
    coded = _model()
    naive = naive_model(coded)
    x = torch.randn(4, 1, 12, 12, dtype=torch.float64)  # small images: float64 convs are slow
    y = torch.tensor([0, 3, 7, 9])
    out, grads = _train_step(coded, x, y)
    out_naive, grads_naive = _train_step(naive, x, y)
    torch.testing.assert_close(out_naive.logits, out.logits)
    torch.testing.assert_close(out_naive.code_loss, out.code_loss)
    for a, b in zip(out_naive.energies, out.energies):
        torch.testing.assert_close(a, b)
    shared = [k for k in grads if k in grads_naive]  # all but the coded blocks' expand convs
    assert len(shared) == len(grads) - len(coded.coded_blocks)
    for k in shared:
        torch.testing.assert_close(grads_naive[k], grads[k], msg=lambda m, k=k: f"{k}: {m}")


def test_naive_block_rejects_plain_block():
    plain = build_model("resnext_mini")
    with pytest.raises(ValueError, match="plain block"):
        NaiveCodedBlock(plain.blocks[0])


def test_interleaved_and_memory():
    calls = []
    times = run.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, torch.device("cpu"))
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert len(times["wall"]["a"]) == len(times["cpu"]["b"]) == 3

    def two_live_tensors():  # 2**20 floats (4 MiB) each; at most two alive at once: an 8 MiB peak
        a = torch.ones(2**20)
        b = a * 2
        del a
        c = b * 3
        del b
        return c.sum()

    peak = run.peak_memory(two_live_tensors, torch.device("cpu"))
    assert 8 * 2**20 <= peak < 8 * 2**20 + 4096


def test_quick_run_writes_results(tmp_path):
    results = run.main(["--quick", "--schemes", "none", "--out", str(tmp_path)])
    row = results["train"][0]
    assert row["params_plain"] == row["params_coded"]  # same widths
    # the naive block holds N x C_out path outputs: clearly more memory than the Gram form
    assert row["naive_mem_ratio"] > row["mem_ratio"]
    assert all(r["params_binary"] < r["params_full"] and r["madds_fraction"] < 1 for r in results["binary"])
    # the default preset and its plain twin, at one batch size (the speeds themselves are printed, never tested)
    assert [r["preset"] for r in results["preset"]] == ["fashion_mnist", "fashion_mnist_baseline"]
    assert len({r["batch"] for r in results["preset"]}) == 1
    assert (tmp_path / "results.json").exists()
    assert "| models" in (tmp_path / "results.md").read_text()


def test_scheme_rows_reach_paper_distance():
    rows = [r for r in run.bench_schemes("cifar", timeout=None) if r["source"].startswith("generate")]
    assert [(r["dataset"], r["ratio"]) for r in rows] == [("cifar100", "8/20"), ("cifar100", "4/20")]
    assert all(r["H_min"] >= r["paper_H_min"] for r in rows)  # the paper's 8 and 4
