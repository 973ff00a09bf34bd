"""The analyses (coded_lib.analysis) against independent computations: hand-made tables, brute
force, scikit-learn, direct masks built from the coding tables, and conv cost formulas."""
import copy
import sys
import types
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import precision_recall_curve, precision_score, recall_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from coded_lib import analysis
from coded_lib.analysis import (agreement_table, binary_metrics, binary_scores, coded_flops_overhead,
                                collect, count_multiply_adds, early_accuracy, masked_vs_extracted, peak_training_memory,
                                precision_recall, removal_curve, subnn_output_distribution)
from coded_lib.models import build_model


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def mini():
    """The mini Coded ResNeXt with every residual branch switched on (the zero-init of the last
    BN would make the subNNs irrelevant in an untrained model), and data labelled by its own
    predictions so that the unmodified model is 100 % accurate."""
    torch.manual_seed(2)  # a draw whose predictions depend on the active subNNs of every coded block
    model = build_model("coded_resnext_mini")
    for b in model.blocks:
        nn.init.ones_(b.bn3.weight)
    model.eval()
    x = torch.randn(24, 1, 28, 28)
    with torch.no_grad():
        y = model(x).logits.argmax(1)
    return model, x, y


def loader(x, y, batch_size=10):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


# --- collect ---------------------------------------------------------------------------------

def test_collect_matches_direct_forward_and_nearest_codeword(mini):
    model, x, y = mini
    model.train()
    out = collect(model, loader(x, y))
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        direct = model(x)
    torch.testing.assert_close(out["logits"], direct.logits)
    assert torch.equal(out["targets"], y) and torch.equal(out["preds"], y)
    assert len(out["energies"]) == len(model.coded_blocks) == out["early_preds"].shape[1]
    for i, b in enumerate(model.coded_blocks):
        e = out["energies"][i].double().numpy()
        v = e / e.sum(1, keepdims=True) * b.scheme.n_act  # Eq. 7: energies rescaled to sum to N_act
        dist = np.linalg.norm(v[:, None, :] - b.scheme.table[None].astype(float), axis=2)
        assert np.array_equal(out["early_preds"][:, i].numpy(), dist.argmin(1))


# --- removal ---------------------------------------------------------------------------------

def test_removal_curve_against_explicit_masks(mini):
    model, x, y = mini
    block = 3
    b = model.coded_blocks[block]
    table = removal_curve(model, loader(x, y), block, repeats=2)
    assert list(table.columns) == ["block", "kind", "k", "accuracy", "std"]
    assert table.groupby("kind")["k"].max().to_dict() == {"active": b.n_act, "inactive": b.n - b.n_act}
    assert (table[table.k == 0].accuracy == 1.0).all()
    # removing all active (resp. all inactive) subNNs is one deterministic mask: build it by hand
    words = b.scheme.codewords()
    for kind, keep in (("active", 1 - words), ("inactive", words)):
        out = collect(model, loader(x, y), subnn_mask_fn=lambda xb, yb, keep=keep: {block: keep[yb]})
        expected = float((out["preds"] == y).float().mean())
        row = table[(table.kind == kind) & (table.k == table[table.kind == kind].k.max())].iloc[0]
        assert row.accuracy == pytest.approx(expected) and row["std"] == pytest.approx(0.0)
    assert table[table.kind == "active"].accuracy.iloc[-1] < 1.0  # the active subNNs matter here


def test_removal_curve_removes_k_subnns_at_every_k(mini):
    """Every point k of the curve: the masks the model received remove exactly k subNNs of each
    sample's pool, and the row's accuracy and std are those of these masks, recomputed here."""
    model, x, y = mini
    block, repeats, batch = 3, 2, 10
    b = model.coded_blocks[block]
    calls = []
    hook = model.register_forward_pre_hook(lambda m, args, kw: calls.append((args[0], kw.get("subnn_mask"))),
                                           with_kwargs=True)
    try:
        table = removal_curve(model, loader(x, y, batch), block, repeats=repeats)
    finally:
        hook.remove()
    n_batches = -(-len(y) // batch)
    assert all(mask is None for _, mask in calls[:n_batches])  # k = 0
    i = n_batches
    for kind, k_max in (("active", b.n_act), ("inactive", b.n - b.n_act)):
        for k in range(1, k_max + 1):
            accs = []
            for _ in range(repeats):
                correct = 0
                for j in range(n_batches):
                    xb, mask = calls[i]
                    i += 1
                    yb = y[j * batch:(j + 1) * batch]
                    words = torch.tensor(b.scheme.table, dtype=torch.float32)[yb]
                    removed = 1 - mask[block]
                    assert (removed.sum(1) == k).all() and (removed <= (words if kind == "active" else 1 - words)).all()
                    with torch.no_grad():
                        correct += int((model(xb, subnn_mask=mask).logits.argmax(1) == yb).sum())
                accs.append(correct / len(y))
            row = table[(table.kind == kind) & (table.k == k)].iloc[0]
            assert row.accuracy == pytest.approx(np.mean(accs)) and row["std"] == pytest.approx(np.std(accs, ddof=1))
    assert i == len(calls)


def test_removal_curves_all_blocks_and_bad_block(mini):
    model, x, y = mini
    table = analysis.removal_curves(model, loader(x[:8], y[:8]), blocks=[0, 2], repeats=1, kinds=("inactive",))
    assert table.groupby("block").k.max().to_dict() == {0: 5, 2: 7}
    with pytest.raises(ValueError):
        removal_curve(model, loader(x, y), block=4)
    with pytest.raises(ValueError):
        removal_curve(build_model("resnext_mini"), loader(x, y), block=0)


# --- early decoders and agreement ------------------------------------------------------------

def test_agreement_table_against_loop():
    preds = torch.tensor([0, 1, 2, 3, 4, 5, 6])
    targets = torch.tensor([0, 1, 0, 3, 0, 5, 0])
    early = torch.tensor([[0, 0, 0], [1, 1, 9], [2, 9, 9], [3, 3, 3], [9, 9, 9], [5, 9, 9], [6, 6, 9]])
    table = agreement_table(preds, early, targets)
    for a in range(4):
        members = [i for i in range(7) if sum(int(early[i, j] == preds[i]) for j in range(3)) == a]
        row = table[table.n_agree == a].iloc[0]
        assert row["count"] == len(members)
        assert row.fraction == pytest.approx(len(members) / 7)
        if members:
            assert row.accuracy == pytest.approx(np.mean([preds[i] == targets[i] for i in members]))
        else:
            assert np.isnan(row.accuracy)
    assert table["count"].tolist() == [1, 2, 2, 2]


def test_early_accuracy_hand_made():
    collected = {"targets": torch.tensor([0, 1, 2, 3]), "preds": torch.tensor([0, 1, 2, 0]),
                 "early_preds": torch.tensor([[0, 0], [0, 1], [0, 2], [0, 3]])}
    table = early_accuracy(collected)
    assert table.decoder.tolist() == [1, 2, "final"]
    assert table.accuracy.tolist() == pytest.approx([0.25, 1.0, 0.75])


# --- binary classifiers ----------------------------------------------------------------------

# the threshold search itself (the authors' grid) is checked by brute force in tests/test_fidelity.py


def test_precision_recall_against_sklearn():
    rng = np.random.default_rng(1)
    labels = rng.uniform(size=500) < 0.3
    scores = rng.normal(size=500) + labels
    for t in (-0.5, 0.3, 1.7, 10.0):
        p, r = precision_recall(scores, labels, t)
        assert p == pytest.approx(precision_score(labels, scores >= t, zero_division=0))
        assert r == pytest.approx(recall_score(labels, scores >= t, zero_division=0))


def synthetic_scores(n, K, seed, shift=2.0):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, K, n)
    scores = rng.normal(size=(n, K))
    scores[np.arange(n), targets] += shift
    return scores, targets


def test_binary_metrics_against_sklearn():
    K = 4
    train_s, train_t = synthetic_scores(800, K, 0)
    val_s, val_t = synthetic_scores(400, K, 1)
    ood_s = np.random.default_rng(2).normal(0.5, 1.0, size=(2000, K))
    report = binary_metrics(train_s, train_t, val_s, val_t, ood_s, neg_ratio=3, seed=0)
    table = report.table.set_index("class")
    for c in range(K):
        t = table.loc[c, "threshold"]  # the search's own tests: tests/test_fidelity.py
        assert np.median(train_s[train_t != c, c]) < t < np.median(train_s[train_t == c, c])
        pos = val_s[val_t == c, c]
        n_pos = len(pos)
        assert table.loc[c, "n_pos"] == n_pos
        assert table.loc[c, "n_neg_id"] == min(3 * n_pos, int((val_t != c).sum()))
        assert table.loc[c, "n_neg_ood"] == 3 * n_pos
        dist = report.logits[report.logits["class"] == c]
        assert np.array_equal(np.sort(dist[dist.group == "ID positive"].logit), np.sort(pos))
        for kind in ("ID", "OOD"):
            neg = dist[dist.group == f"{kind} negative"].logit.to_numpy()
            y = np.r_[np.ones(n_pos), np.zeros(len(neg))]
            s = np.r_[pos, neg]
            assert table.loc[c, f"precision_{kind.lower()}"] == pytest.approx(precision_score(y, s >= t))
            assert table.loc[c, "recall"] == pytest.approx(recall_score(y, s >= t))
            curve = report.curves[(report.curves["class"] == c) & (report.curves.negatives == kind)]
            p_ref, r_ref, _ = precision_recall_curve(y, s)
            assert np.allclose(curve.precision, p_ref) and np.allclose(curve.recall, r_ref)
    # OOD negatives score lower than the ID positives but higher than ID negatives on average
    assert (table.precision_ood < table.precision_id).all()


def test_binary_metrics_keeps_all_negatives_by_default():
    val_s, val_t = synthetic_scores(300, 3, 3)
    report = binary_metrics(val_s, val_t, val_s, val_t)
    assert (report.table.n_pos + report.table.n_neg_id == 300).all()
    assert "precision_ood" not in report.table
    with pytest.raises(ValueError):
        binary_metrics(val_s, val_t, val_s[:, :2], val_t)


def test_binary_scores_are_the_masked_models_logits(mini):
    model, x, y = mini
    scores, targets = binary_scores(model, loader(x, y), classes=[1, 7])
    assert scores.shape == (24, 2) and np.array_equal(targets, y.numpy())
    for j, c in enumerate([1, 7]):
        # the binary classifier by hand (F-binary): a copy of the model whose subNNs inactive for c
        # output nothing (their second BN zeroed, so their hidden channels are 0 after the ReLU)
        by_hand = copy.deepcopy(model)
        for b in by_hand.coded_blocks:
            for n in np.flatnonzero(b.scheme.table[c] == 0):
                b.bn2.weight.data[n * b.d:(n + 1) * b.d] = 0
                b.bn2.bias.data[n * b.d:(n + 1) * b.d] = 0
        with torch.no_grad():
            expected = by_hand(x).logits[:, c]
        np.testing.assert_allclose(scores[:, j], expected.numpy(), rtol=1e-5, atol=1e-5)
    plain = build_model("resnext_mini").eval()
    s, _ = binary_scores(plain, loader(x, y), classes=[2])
    with torch.no_grad():
        np.testing.assert_allclose(s[:, 0], plain(x).logits[:, 2].numpy(), rtol=1e-5, atol=1e-5)


def test_masked_equals_extracted(mini):
    model, x, y = mini
    table = masked_vs_extracted(model, loader(x[:10], y[:10]), classes=[0, 3])
    assert (table.max_abs_diff < 1e-4).all()
    assert ((table.params_fraction_whole > 0) & (table.params_fraction_whole < 1)).all()
    assert ((table.params_fraction_residual_paths > 0) & (table.params_fraction_residual_paths < 1)).all()


# --- subNN output distributions --------------------------------------------------------------

def test_subnn_output_distribution_groups_and_energies(mini):
    model, x, y = mini
    block = 3  # the second block of c4, the paper's "s3" (F-act)
    b = model.coded_blocks[block]
    chw = 160 * 4 * 4  # C_out x H x W of c4 on 28x28 input (14, 7, then 4 after the strides)
    values, summary = subnn_output_distribution(model, loader(x[:1], y[:1], 1), block, subnns=range(5),
                                                values_per_sample=None)
    assert len(values) == 5 * chw
    for n in range(5):
        v = values[values.subnn == n]
        assert (v.active == bool(b.scheme.table[int(y[0]), n])).all()
        # mean of the squared normalized output is the energy E(t̄_n) of Eq. 2-3
        with torch.no_grad():
            energy = model(x[:1]).energies[block][0, n].item()
        assert (v.value ** 2).mean() == pytest.approx(energy, rel=1e-3)
        # 99th percentile (linear interpolation between the closest ranks) and maximum, by hand
        s = np.sort(v.value.to_numpy())
        pos = 0.99 * (len(s) - 1)
        p99 = s[int(pos)] + (pos - int(pos)) * (s[int(pos) + 1] - s[int(pos)])
        row = summary[summary.subnn == n].iloc[0]
        assert row.p99 == pytest.approx(p99) and row["max"] == s[-1] and row["count"] == chw
    values, summary = subnn_output_distribution(model, loader(x, y), block, subnns=[0, 9], values_per_sample=16)
    assert len(values) == 24 * 2 * 16
    for n in (0, 9):
        n_active = int(b.scheme.table[y.numpy(), n].sum())
        counts = summary[summary.subnn == n].set_index("active")["count"]
        assert counts.get(True, 0) == 16 * n_active and counts.get(False, 0) == 16 * (24 - n_active)
    assert (values.value >= 0).all()
    cut, same = subnn_output_distribution(model, loader(x, y), block, subnns=[0, 9], values_per_sample=16, max_rows=100)
    assert len(cut) == 100 and same.equals(summary)


# --- computational cost ----------------------------------------------------------------------

@pytest.mark.parametrize("conv, size", [(nn.Conv2d(3, 8, 3, padding=1, bias=False), (3, 16, 16)),
                                        (nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4, bias=False), (8, 16, 16))])
def test_multiply_adds_of_a_conv(conv, size):
    h_out = (size[1] + 2 * conv.padding[0] - 3) // conv.stride[0] + 1
    expected = conv.in_channels // conv.groups * conv.out_channels * 9 * h_out * h_out  # C_in·C_out·k²·H·W
    assert count_multiply_adds(conv, size) == expected


def manual_multiply_adds(model, size):
    total = []

    def hook(m, args, out):
        if isinstance(m, nn.Conv2d):
            # C_in/groups · k² multiply-adds for every output element (C_out·H·W of them)
            total.append(m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1] * out[0].numel())
        else:
            total.append(m.in_features * m.out_features)
    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.randn(1, *size))
    for h in hooks:
        h.remove()
    return sum(total)


def test_multiply_adds_and_overhead_of_the_mini_models():
    plain, coded = build_model("resnext_mini"), build_model("coded_resnext_mini")
    assert count_multiply_adds(plain, (1, 28, 28)) == manual_multiply_adds(plain, (1, 28, 28))
    # the coded model adds its energy quadratic forms (matrix products) on top of the same convs
    assert count_multiply_adds(coded, (1, 28, 28)) > manual_multiply_adds(coded, (1, 28, 28))
    assert coded_flops_overhead(plain, (1, 28, 28)) == 0
    # coded blocks: two of c3 (N=10, 80 x 7 x 7) and two of c4 (N=10, 160 x 4 x 4); c2 strides 28 -> 14
    assert coded_flops_overhead(coded, (1, 28, 28)) == 3 * 10 * (2 * 80 * 7 * 7 + 2 * 160 * 4 * 4)


def test_fvcore_convention_gives_the_papers_resnext50_gflops():
    # T-cost: ResNeXt-50 (32x4d) at the 160 px training resolution, 2.196 GFLOPs in the paper
    model = build_model("resnext50_imagenet")
    assert analysis.fvcore_flops(model, (3, 160, 160)) / 1e9 == pytest.approx(2.196, abs=0.0006)
    # the paper's coded overhead, 3*N*C*H*W over the 9 coded blocks: 6 of c4 (1024 x 10 x 10), 3 of c5 (2048 x 5 x 5)
    assert 3 * 32 * (6 * 1024 * 100 + 3 * 2048 * 25) / 1e9 == pytest.approx(2.269 - 2.196, abs=0.001)


def test_gram_matrices_are_shared_by_the_batch():
    coded = build_model("coded_resnext_mini")
    one, eight = count_multiply_adds(coded, (1, 28, 28)), count_multiply_adds(coded, (1, 28, 28), batch_size=8)
    assert eight < one
    plain = build_model("resnext_mini")
    assert count_multiply_adds(plain, (1, 28, 28), batch_size=8) == count_multiply_adds(plain, (1, 28, 28))


class BigTemporary(nn.Module):
    """A model (ModelOutput-like interface) that makes two 8 MiB temporaries in its forward."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x, targets=None, subnn_mask=None):
        big = torch.ones(2 ** 21) * 2.0  # torch.ones and the product: 2 x 8 MiB alive together
        return SimpleNamespace(logits=self.lin(x.flatten(1)) + 0 * big.sum(), code_loss=torch.zeros(()))


def test_peak_training_memory_sees_temporaries():
    model = BigTemporary()
    peak = peak_training_memory(model, (4, 1, 1), batch_size=2)
    assert 16 * 2 ** 20 <= peak < 20 * 2 ** 20



def test_training_throughput_counts_steps_over_elapsed_time(monkeypatch):
    """images/s = steps x batch / (time of the timed steps), on a fake clock: 0.25 s per reading."""
    clock = iter(np.arange(0.0, 100.0, 0.25))
    monkeypatch.setattr(analysis.cost, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    model = nn.Linear(4, 3)
    calls = []
    model.register_forward_hook(lambda m, a, out: calls.append(len(a[0])))
    net = _LinearModel(model)  # the cost functions call model(x, targets=y) and read .logits, .code_loss
    assert analysis.training_throughput(net, (4, 1, 1), batch_size=2, steps=3, warmup=1) == 3 * 2 / 0.25
    assert calls == [2] * 4  # one warm-up step, three timed ones, each on the whole batch


class _LinearModel(nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.lin, self.num_classes = lin, lin.out_features

    def forward(self, x, targets=None, subnn_mask=None):
        return SimpleNamespace(logits=self.lin(x.flatten(1)), code_loss=torch.zeros(()))


def test_cost_table_coded_vs_plain():
    models = {"coded": build_model("coded_resnext_mini"), "plain": build_model("resnext_mini")}
    table = analysis.cost_table(models, (1, 28, 28), batch_size=4, steps=1).set_index("model")
    assert table.loc["coded", "params_m"] == table.loc["plain", "params_m"]
    assert table.loc["coded", "gmacs"] > table.loc["plain", "gmacs"]
    assert (table.gflops_fvcore > table.gmacs).all()
    params_mb = table.loc["plain", "params_m"] * 1e6 * 4 / 2 ** 20
    assert (table.peak_mem_mb > 3 * params_mb).all()  # weights + gradients + momentum at least
    assert table.images_per_s.notna().all()  # its value: test_training_throughput_counts_steps_over_elapsed_time


# --- sweeps ----------------------------------------------------------------------------------

def test_sweep_reads_final_metrics(tmp_path, monkeypatch):
    calls = []

    def ensure_run(preset, run_dir=None, **overrides):
        calls.append((preset, overrides))
        d = tmp_path / f"mu{overrides['mu']}"
        d.mkdir()
        pd.DataFrame({"epoch": [1, 2], "val_acc": [0.5, 0.6 + overrides["mu"] / 100], "code_loss": [1.0, 0.5],
                      "early_acc_1": [0.1, 0.2], "early_acc_2": [0.3, 0.4]}).to_csv(d / "metrics.csv", index=False)
        return d

    fake = types.ModuleType("coded_lib.train")
    fake.ensure_run = ensure_run
    monkeypatch.setitem(sys.modules, "coded_lib.train", fake)
    table = analysis.sweep("fashion_mnist", "mu", [1, 6], base_overrides={"epochs": 1})
    assert calls == [("fashion_mnist", {"epochs": 1, "mu": 1}), ("fashion_mnist", {"epochs": 1, "mu": 6})]
    assert table.mu.tolist() == [1, 6]
    assert table.val_acc.tolist() == pytest.approx([0.61, 0.66])
    assert table.early_acc_2.tolist() == [0.4, 0.4] and (table.epoch == 2).all()
    with pytest.raises(ValueError):
        analysis.sweep("fashion_mnist", "mu", [1], base_overrides={"mu": 2})


def test_removal_table_reads_percent_and_marks_impossible_k():
    """Block 0 of the curves (N_act = 3 active, 1 inactive subNN): rows k = 0..3, percent, and "–"
    for k = 2, 3 inactive ones (the block has one); blocks numbered from 1 as the chapters name them."""
    import pandas as pd

    from coded_lib.analysis import removal_table

    rows = [("active", 0, 0.904), ("active", 1, 0.871), ("active", 2, 0.55), ("active", 3, 0.1234),
            ("inactive", 0, 0.904), ("inactive", 1, 0.899)]
    table = removal_table(pd.DataFrame([{"block": 0, "kind": kind, "k": k, "accuracy": a, "std": 0.0}
                                        for kind, k, a in rows]))
    assert list(table.columns) == ["active", "inactive"]
    assert list(table.index) == [(1, 0), (1, 1), (1, 2), (1, 3)]
    assert table["active"].tolist() == [90.4, 87.1, 55.0, 12.3]
    assert table["inactive"].tolist() == [90.4, 89.9, "–", "–"]


def test_conditional_sweep_table_says_the_gate_in_words_never_nan_or_inf():
    import math

    import pandas as pd

    from coded_lib.analysis.conditional import sweep_table

    sweep = pd.DataFrame({"threshold": [None, math.inf, 0.18907, 0.0], "gated": [0.0, 0.0, 0.25, 1.0],
                          "accuracy": [0.771, 0.771, 0.766, 0.7375], "fraction": [1.0, 1.0, 0.937, 0.749],
                          "seconds": [1.5, 1.46, 1.8, 1.54], "speedup": [1.0, 1.027, 0.833, 0.974]})
    t = sweep_table(sweep)
    assert list(t.index) == ["full model (no gate)", "gate, none taken", "confidence ≥ 0.189", "confidence ≥ 0.000"]
    assert list(t["% gated"]) == [0.0, 0.0, 25.0, 100.0] and list(t["accuracy (%)"]) == [77.1, 77.1, 76.6, 73.75]
    shown = list(t.reset_index().astype(str).to_numpy().ravel())
    assert not any(s.lower() in ("nan", "inf", "-inf", "none") for s in shown)


def test_linear_reference_is_logistic_regression_on_the_runs_own_images(tmp_path):
    """analysis.reference against sklearn fitted here on the raw uint8 files / 255 (no transform undone)."""
    from sklearn.linear_model import LogisticRegression

    from coded_lib.analysis.reference import linear_accuracy
    from coded_lib.train import data
    from coded_lib.train.presets import get_config

    cfg = get_config("fashion_mnist", train_subset=300, val_subset=200, seed=1)
    train, val = data.load("fashion_mnist", "train"), data.load("fashion_mnist", "val")
    i = data.balanced_subset(data.targets_of(train), 300, 1)  # the run's training images: its seed
    j = data.balanced_subset(data.targets_of(val), 200, 0)  # its validation images: seed 0 for every run
    x = train.images[i].flatten(1).numpy() / 255
    xv = val.images[j].flatten(1).numpy() / 255
    y, yv = np.asarray(train.targets)[i], np.asarray(val.targets)[j]
    expected = LogisticRegression(C=1.0, max_iter=1000).fit(x, y).score(xv, yv)
    assert linear_accuracy(cfg, tmp_path) == pytest.approx(expected, abs=1e-12)
    # kept per data: a second call reads the file
    assert (tmp_path / "linear_reference.json").exists()
    assert linear_accuracy(cfg, tmp_path) == linear_accuracy(cfg, tmp_path)
    assert len(__import__("json").loads((tmp_path / "linear_reference.json").read_text())) == 1
    assert linear_accuracy(SimpleNamespace(dataset="imagenet"), tmp_path) is None  # no fit of 150,528 pixels
