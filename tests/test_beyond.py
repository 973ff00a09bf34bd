"""Beyond the paper (issue 15): semantic coding schemes, IS-ResNeXt thin sub-networks, conditional
computation. Each is checked against an independent computation: brute force, a hand-sliced
network, the full or masked model, a hand count of multiply-adds."""
import itertools
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from coded_lib.beyond import semantic
from coded_lib.analysis import anytime as anytime_analysis
from coded_lib.analysis import conditional
from coded_lib.analysis.cost import count_multiply_adds, multiply_adds_by_module
from coded_lib.analysis.removal import removal_gaps
from coded_lib.analysis.semantic import class_distances
from coded_lib.beyond.anytime import bounds, is_resnext_mini
from coded_lib.coding import CodingScheme, scheme_for
from coded_lib.decoders import early_decode
from coded_lib.models import ARCHS, CodedResNeXt, _plain, build_model
from coded_lib.train.presets import get_config


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


def _randomize_bn(model):
    """Eval-mode BatchNorms with non-trivial statistics and affine parameters (the zero-init of the
    last BN would otherwise make every residual branch vanish)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


# --- SSAL clustering ---------------------------------------------------------------------------------

def _within(d, groups):
    return sum(d[i, j] for g in groups for i, j in itertools.combinations(g, 2))


def _brute_even_partitions(K, G):
    size = K // G
    def rec(left):
        if not left:
            yield []
            return
        first = left[0]
        for rest in itertools.combinations(left[1:], size - 1):
            group = [first, *rest]
            for tail in rec([c for c in left if c not in group]):
                yield [group, *tail]
    yield from rec(list(range(K)))


def test_even_groups_find_the_brute_force_optimum_of_clustered_labels():
    # three tight clusters of two labels each, far apart, labels shuffled
    rng = np.random.default_rng(3)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    order = rng.permutation(6)
    points = centres[order // 2] + rng.normal(scale=0.3, size=(6, 2))
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    best = min(_brute_even_partitions(6, 3), key=lambda p: _within(d, p))
    groups = semantic.even_groups(d, 3)
    assert sorted(map(sorted, groups)) == sorted(map(sorted, best))
    assert _within(d, groups) == pytest.approx(_within(d, best))


@pytest.mark.parametrize("K, G", [(10, 2), (10, 3), (7, 4), (5, 5), (4, 1)])
def test_even_groups_partition_the_labels_in_sizes_differing_by_at_most_one(K, G):
    rng = np.random.default_rng(K * G)
    p = rng.normal(size=(K, 4))
    d = np.linalg.norm(p[:, None] - p[None], axis=-1)
    groups = semantic.even_groups(d, G)
    assert sorted(c for g in groups for c in g) == list(range(K))
    sizes = [len(g) for g in groups]
    assert len(groups) == G and max(sizes) - min(sizes) <= 1


def test_even_groups_reject_bad_input():
    with pytest.raises(ValueError, match="symmetric"):
        semantic.even_groups(np.array([[0, 1], [2, 0]]), 1)
    with pytest.raises(ValueError, match="n_groups"):
        semantic.even_groups(np.zeros((3, 3)), 4)


# --- semantic coding schemes -------------------------------------------------------------------------

@pytest.mark.parametrize("K, N, n_act, groups", [(4, 4, 2, [[0, 1], [2, 3]]), (4, 6, 3, [[0, 3], [1, 2]]),
                                                  (5, 5, 2, [[0, 1, 2], [3, 4]])])
def test_semantic_scheme_is_the_brute_force_optimum_under_the_rules(K, N, n_act, groups):
    agnostic = scheme_for(K, N, n_act)
    words = [np.array([1 if n in c else 0 for n in range(N)]) for c in itertools.combinations(range(N), n_act)]
    label = {c: i for i, g in enumerate(groups) for c in g}
    same_pairs = [(i, j) for i, j in itertools.combinations(range(K), 2) if label[i] == label[j]]
    best = -1
    for rows in itertools.permutations(words, K):
        t = np.array(rows)
        if not np.array_equal(t.sum(0), agnostic.column_sums()):
            continue
        if CodingScheme(t).min_hamming() < agnostic.min_hamming():
            continue
        best = max(best, sum(int(t[i] @ t[j]) for i, j in same_pairs))
    s = semantic.semantic_scheme(groups, N, n_act)
    t = s.table.astype(int)
    assert s.n_act == n_act and np.array_equal(s.column_sums(), agnostic.column_sums())
    assert s.min_hamming() >= agnostic.min_hamming()
    assert sum(int(t[i] @ t[j]) for i, j in same_pairs) == best


def test_semantic_schemes_of_the_mini_network_keep_the_rules_and_share_more_within_groups():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(10, 3))
    d = np.linalg.norm(p[:, None] - p[None], axis=-1)
    out = semantic.semantic_schemes(d, [("c3", 10, 5), ("c4", 10, 3)])
    for name, n_act, G in (("c3", 5, 2), ("c4", 3, 3)):
        scheme, groups = out[name]["scheme"], out[name]["groups"]
        agnostic = scheme_for(10, 10, n_act)
        assert len(groups) == G
        assert (scheme.table.sum(1) == n_act).all()  # rule A
        assert scheme.min_hamming() >= agnostic.min_hamming()  # rule B
        assert np.array_equal(scheme.column_sums(), agnostic.column_sums())  # rule C
        mine, theirs = semantic.shared_subnns(scheme, groups), semantic.shared_subnns(agnostic, groups)
        assert mine["within"] > theirs["within"] and mine["within"] > mine["across"]


def test_models_and_configs_take_the_schemes_of_a_stage():
    scheme = CodingScheme.from_strings(("1111100000" * 2)[10 - i:20 - i] for i in range(10))  # the 10 rotations
    model = build_model("coded_resnext_mini", num_classes=10, in_channels=1, schemes={"c3": scheme.strings()})
    assert [b.scheme for b in model.coded_blocks[:2]] == [scheme, scheme]
    assert model.coded_blocks[2].scheme == scheme_for(10, 10, 3)
    assert torch.equal(model.stacked_codewords[:, :10], scheme.codewords())
    cfg = get_config("smoke", schemes={"c3": scheme.strings()})
    assert cfg.model_overrides()["schemes"] == {"c3": scheme.strings()}
    with pytest.raises(ValueError, match="N_act"):
        build_model("coded_resnext_mini", schemes={"c4": scheme.strings()})
    with pytest.raises(ValueError, match="coded stages"):
        build_model("coded_resnext_mini", schemes={"c2": scheme.strings()})


def test_class_distances_against_numpy():
    class Identity(nn.Module):  # features = the inputs, logits = head(features)
        num_classes = 3

        def __init__(self):
            super().__init__()
            self.head = nn.Linear(2, 3, bias=False)

        def forward(self, x):
            return SimpleNamespace(logits=self.head(x))

    model = Identity()
    x = torch.randn(30, 2)
    y = torch.arange(30) % 3
    loader = [(x[:16], y[:16]), (x[16:], y[16:])]
    means = np.stack([x[y == k].numpy().mean(0) for k in range(3)])
    expected = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert np.allclose(class_distances(model, loader), expected, atol=1e-5)
    pred = model.head(x).argmax(1).numpy()
    conf = np.array([[np.mean(pred[y.numpy() == i] == j) for j in range(3)] for i in range(3)])
    expected = 1 - (conf + conf.T) / 2
    np.fill_diagonal(expected, 0)
    assert np.allclose(class_distances(model, loader, "confusion"), expected)


def test_removal_gaps_by_hand():
    rows = [("active", 0, 0.9), ("active", 1, 0.7), ("active", 2, 0.5), ("active", 3, 0.1),
            ("inactive", 0, 0.9), ("inactive", 1, 0.9), ("inactive", 2, 0.8)]
    curves = pd.DataFrame([{"block": 1, "kind": k, "k": n, "accuracy": a} for k, n, a in rows])
    assert removal_gaps(curves) == {1: pytest.approx((0.9 + 0.8) / 2 - (0.7 + 0.5) / 2)}


# --- IS-ResNeXt ----------------------------------------------------------------------------------

def test_is_resnext_thin_sub_network_equals_a_hand_sliced_resnext():
    model = _randomize_bn(is_resnext_mini(widths=5, num_classes=10, in_channels=1))
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        every = model.all_logits(x)
    k = 2  # of 5: 4 of the 10 paths; channels 16 -> 6, 40 -> 16, 80 -> 32, 160 -> 64
    arch = _plain(ARCHS["coded_resnext_mini"])
    hand = CodedResNeXt(replace(arch, stem_width=6, stages=tuple(
        replace(st, c_out=st.c_out * 2 // 5, n=4, n_act=4) for st in arch.stages)), p_drop=0.0)
    full = dict(model.net.named_modules())
    for name, m in hand.named_modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
            src = full[name]
            for attr in ("weight", "bias", "running_mean", "running_var"):
                t = getattr(m, attr, None)
                if t is not None:
                    t.data.copy_(getattr(src, attr)[tuple(slice(0, n) for n in t.shape)])
    hand.head.weight.data.copy_(model.heads[k - 1].weight)
    with torch.no_grad():
        assert torch.allclose(hand.eval()(x).logits, every[k - 1], atol=1e-5)
        assert torch.allclose(model.thin(k)(x).logits, every[k - 1], atol=1e-5)
        assert torch.allclose(model(x).logits, every[-1])


def test_is_resnext_sub_network_ignores_the_wider_parts():
    """The one-pass property: changing every weight outside sub-network k leaves its output alone."""
    model = _randomize_bn(is_resnext_mini(widths=5, num_classes=10, in_channels=1))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        before = model.all_logits(x)
        for b in model.net.blocks:
            o, h = bounds(b.c_out, 5)[0], bounds(b.n, 5)[0] * b.d
            b.conv1.parametrizations.weight.original[h:] += 1.0
            b.conv3.parametrizations.weight.original[o:] += 1.0
            b.bn3.bias[o:] += 1.0
        after = model.all_logits(x)
    assert torch.allclose(before[0], after[0], atol=1e-6)
    assert not torch.allclose(before[-1], after[-1])


def test_is_resnext_trains_on_the_anytime_loss():
    model = is_resnext_mini(widths=5, num_classes=10, in_channels=1).train()
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    out = model(x, y)
    logits = model.all_logits(x)
    expected = sum(nn.functional.cross_entropy(lg, y) for lg in logits[:-1])
    assert torch.allclose(out.code_loss, expected) and torch.allclose(out.logits, logits[-1])
    with pytest.raises(ValueError, match="p_drop"):
        is_resnext_mini(p_drop=0.1)


def _hand_multiply_adds(stem, stages, in_channels=1, size=28, classes=10, density=None):
    """Multiply-adds of a plain mini ResNeXt from its widths: (stem width, [(c_out, d, n, depth, stride)])."""
    total, c_in, s = in_channels * stem * 9 * size * size, stem, size
    for c_out, d, n, depth, stride in stages:
        for i in range(depth):
            st = stride if i == 0 else 1
            s_out = (s - 1) // st + 1
            hid = n * d
            total += c_in * hid * s * s + d * hid * 9 * s_out * s_out + hid * c_out * s_out * s_out
            if st != 1 or c_in != c_out:
                total += c_in * c_out * s_out * s_out
            c_in, s = c_out, s_out
    return total + c_in * classes


def test_multiply_adds_of_a_thin_sub_network_against_a_hand_count():
    model = is_resnext_mini(widths=5, num_classes=10, in_channels=1)
    thin = model.thin(5)  # the whole width, as a plain network
    stages = [(st.c_out, st.d, st.n, st.depth, st.stride) for st in ARCHS["coded_resnext_mini"].stages]
    assert multiply_adds_by_module(thin, (1, 28, 28))[""] == _hand_multiply_adds(16, stages)
    assert count_multiply_adds(build_model("resnext_mini", num_classes=10, in_channels=1), (1, 28, 28)) == \
        _hand_multiply_adds(16, stages)
    # skipping IS-ResNeXt's structural zeros: each masked conv counts its non-zero weights only
    sparse = multiply_adds_by_module(thin, (1, 28, 28), skip_zero_weights=True)
    b = thin.blocks[1]  # c3's first block: 40 -> 80 channels, 14 -> 7 px, 10 paths of d = 4
    # conv1, 40 -> 40 hidden at 14 px: hidden part p (8 channels: paths 2p, 2p+1 of d = 4) reads input parts 0..p
    # (8 channels each): 8 * 8 * (1 + 2 + 3 + 4 + 5) = 960 weights
    assert sparse["blocks.1.conv1"] == 960 * 14 * 14
    assert sparse["blocks.1.conv3"] == 5 * 16 * 8 * 7 * 7  # block-diagonal, at 7 px: 5 blocks of 16 x 8
    assert sparse[""] < multiply_adds_by_module(thin, (1, 28, 28))[""]
    assert b.conv3.weight.shape == (80, 40, 1, 1)


def test_anytime_table_costs_rise_with_the_operating_point():
    coded = _randomize_bn(build_model("coded_resnext_mini", num_classes=10, in_channels=1))
    plain = _randomize_bn(build_model("resnext_mini", num_classes=10, in_channels=1))
    is_model = _randomize_bn(is_resnext_mini(widths=5, num_classes=10, in_channels=1))
    loader = [(torch.randn(16, 1, 28, 28), torch.arange(16) % 10)]
    table = anytime_analysis.anytime_table(coded, is_model, plain, loader, (1, 28, 28))
    for method, rows in table.groupby("method"):
        assert rows.multiply_adds.is_monotonic_increasing, method
    exits = table[table.method.str.startswith("Coded")]
    assert exits.multiply_adds.iloc[-1] == count_multiply_adds(coded, (1, 28, 28), anytime_analysis.BATCH)
    assert table[table.method == "ResNeXt"].fraction.item() == 1.0
    best = anytime_analysis.best_within(table, 0.5)
    assert (best.fraction <= 0.5).all() and set(best.method) <= set(table.method)


# --- conditional computation ---------------------------------------------------------------------

def test_conditional_threshold_inf_is_the_full_model_and_zero_the_masked_model():
    model = _randomize_bn(build_model("coded_resnext_mini", num_classes=10, in_channels=1))
    x = torch.randn(12, 1, 28, 28)
    net = conditional.ConditionalNet(model, gate_block=1, top=1)
    with torch.no_grad():
        out = model(x)
        logits, kept, gated = net(x, float("inf"))
        assert torch.allclose(logits, out.logits, atol=1e-5) and not gated.any() and (kept == 10).all()
        pred = early_decode(out.energies[1], model.coded_blocks[1].scheme)
        masks = {b.index: b.scheme.codewords()[pred] for b in model.coded_blocks[2:]}
        logits, kept, gated = net(x, 0.0)
        assert gated.all() and (kept == 3).all()
        assert torch.allclose(logits, model(x, subnn_mask=masks).logits, atol=1e-5)
        assert not torch.allclose(logits, out.logits, atol=1e-3)


def test_conditional_sweep_costs_from_full_to_masked():
    model = _randomize_bn(build_model("coded_resnext_mini", num_classes=10, in_channels=1))
    loader = [(torch.randn(16, 1, 28, 28), torch.arange(16) % 10)]
    table = conditional.conditional_sweep(model, loader, [0.0, 0.5, 1.0], gate_block=1, repeats=1)
    full = count_multiply_adds(model, (1, 28, 28), anytime_analysis.BATCH)
    assert table.multiply_adds.iloc[0] == full and table.multiply_adds.iloc[1] == pytest.approx(full)
    assert table.gated.tolist() == [0.0, 0.0, 0.5, 1.0]
    # all gated: each of c4's two blocks runs 3 of its 10 paths, costed as the cut-out block
    net = conditional.ConditionalNet(model, 1)
    costs = net.path_costs((1, 28, 28))
    assert table.multiply_adds.iloc[3] == pytest.approx(full - sum(c[-1] - c[2] for c in costs.values()))
    assert all(np.all(np.diff(c) > 0) for c in costs.values())


def test_dashboard_has_a_beyond_the_paper_section(tmp_path):
    from coded_lib.companion import report

    for id, verdict in (("B-semantic", "inconclusive"), ("B-conditional", "holds")):
        report.record(tmp_path / "run", id, "a question", "1 vs 2", "Fashion-MNIST: 10 images", "tiny",
                      verdict=verdict, note="the rule")
    page = report.comparison_markdown(report.gather(tmp_path), chapters=["conditional"])
    part = page.split("## Beyond the paper", 1)[1].split("## Every number")[0]
    assert "[B-conditional](notebooks/conditional.ipynb)" in part and "B-semantic" in part
    assert "{bdg-warning}`inconclusive`" in part and "{bdg-success}`holds`" in part and "R1" in part
    with pytest.raises(ValueError, match="B-anytime"):
        report.record(tmp_path, "B-nothing", "q", "1", "d", "s")
