"""Tests of coded_lib.coding against independent references: the paper's tables typed in
again, pairwise loops over Python ints, a brute-force Algorithm 1, and coding-theory facts."""
import itertools
import random

import numpy as np
import pytest
import torch

from coded_lib import coding
from coded_lib.coding import CodingScheme, generate, paper_scheme, scheme_for

# Table 4 of the appendix (SPEC §1.2), typed again: class -> (5/10, 3/10)
CIFAR10 = {
    "airplane": ("1010100011", "1001001000"),
    "automobile": ("0101010101", "0110001000"),
    "bird": ("1101100010", "1010000001"),
    "cat": ("0011001101", "0000001110"),
    "deer": ("1010010101", "0001010100"),
    "dog": ("1001001110", "0010100100"),
    "frog": ("1011101000", "0000110010"),
    "horse": ("0100011110", "0100010001"),
    "ship": ("0110111000", "0001100001"),
    "truck": ("0100110011", "1100000010"),
}


# ----------------------------------------------------------------------------- naive references


def as_ints(scheme):
    return [int("".join("1" if b else "0" for b in row), 2) for row in scheme.table]


def naive_min_distance(ints):
    return min((a ^ b).bit_count() for a, b in itertools.combinations(ints, 2))


def naive_column_sums(scheme):
    sums = [0] * scheme.N
    for row in scheme.table.tolist():
        for n, bit in enumerate(row):
            sums[n] += int(bit)
    return sums


def brute_force_greedy(N, n_act, h_min):
    """Lines 11-16 of Algorithm 1 as written: sorted words, keep if far from all kept."""
    words = sorted(sum(1 << (N - 1 - i) for i in ones) for ones in itertools.combinations(range(N), n_act))
    kept = []
    for w in words:
        if all((w ^ g).bit_count() >= h_min for g in kept):
            kept.append(w)
    return kept


# ----------------------------------------------------------------------------- CIFAR-10 tables


@pytest.mark.parametrize("col, ratio", [(0, "5/10"), (1, "3/10")])
def test_cifar10_tables_verbatim(col, ratio):
    scheme = paper_scheme("cifar10", ratio)
    assert scheme.strings() == [CIFAR10[c][col] for c in coding.CIFAR10_CLASSES]
    assert list(coding.CIFAR10_CLASSES) == list(CIFAR10)
    assert scheme.ratio == ratio and scheme.K == 10 and scheme.N == 10
    frame = scheme.to_frame(coding.CIFAR10_CLASSES)
    assert frame.loc["horse", "codeword"] == CIFAR10["horse"][col]


@pytest.mark.parametrize("col, n_act", [(0, 5), (1, 3)])
def test_cifar10_tables_hmin_and_rule_a(col, n_act):
    words = [CIFAR10[c][col] for c in CIFAR10]
    assert all(w.count("1") == n_act for w in words)  # rule A
    dist = min(sum(a != b for a, b in zip(u, v)) for u, v in itertools.combinations(words, 2))
    assert dist == 4  # SPEC: both have H_min = 4
    assert sum(a != b for a, b in zip(CIFAR10["horse"][col], CIFAR10["ship"][col])) == 4
    scheme = paper_scheme("cifar10", f"{n_act}/10")
    assert scheme.min_hamming() == 4
    assert naive_column_sums(scheme) == [n_act] * 10
    assert scheme_for(10, 10, n_act) == scheme  # dataset None, K = N = 10 -> the paper's tables


# ----------------------------------------------------------------------------- stored schemes


@pytest.mark.parametrize("dataset, ratio, K, N, n_act, h_paper, s_min, s_max", [
    ("cifar100", "8/20", 100, 20, 8, 8, 40, 40),
    ("cifar100", "4/20", 100, 20, 4, 4, 20, 20),
    ("imagenet", "16/32", 1000, 32, 16, 10, 499, 501),
    ("imagenet", "8/32", 1000, 32, 8, 6, 249, 251),
])
def test_stored_schemes_match_the_paper(dataset, ratio, K, N, n_act, h_paper, s_min, s_max):
    scheme = paper_scheme(dataset, ratio)
    ints = as_ints(scheme)
    assert (scheme.K, scheme.N, scheme.n_act) == (K, N, n_act)
    assert len(set(ints)) == K
    assert all(w.bit_count() == n_act for w in ints)  # rule A
    h = naive_min_distance(ints)
    assert h >= h_paper
    assert scheme.min_hamming() == h
    sums = naive_column_sums(scheme)
    assert min(sums) >= s_min and max(sums) <= s_max  # at least as balanced as the paper
    assert list(scheme.column_sums()) == sums


def test_imagenet_schemes_beat_the_paper_as_documented():
    s16, s8 = paper_scheme("imagenet", "16/32"), paper_scheme("imagenet", "8/32")
    assert naive_min_distance(as_ints(s16)) == 12
    assert set(naive_column_sums(s16)) == {500}
    assert set(naive_column_sums(s8)) == {250}
    # provenance: every stored word is a word of the extended BCH code it is said to come from
    code16 = set(coding.extended_bch_words(5, 11).tolist())
    code8 = set(coding.extended_bch_words(5, 5).tolist())
    assert set(as_ints(s16)) <= code16
    assert set(as_ints(s8)) <= code8


def test_stored_files_are_plain_codewords_and_cached():
    from importlib.resources import files
    for name in ("cifar100_8of20.txt", "cifar100_4of20.txt", "imagenet_16of32.txt", "imagenet_8of32.txt"):
        lines = (files("coded_lib") / "schemes" / name).read_text().splitlines()
        assert lines and all(set(ln) <= {"0", "1"} for ln in lines)
    assert paper_scheme("imagenet", "16/32") is paper_scheme("imagenet", "16/32")
    assert scheme_for(1000, 32, 8) == paper_scheme("imagenet", "8/32")
    assert scheme_for(100, 20, 4, dataset="cifar100") == paper_scheme("cifar100", "4/20")


# ----------------------------------------------------------------------------- Algorithm 1


@pytest.mark.parametrize("N, n_act, h_min", [(8, 4, 4), (10, 3, 4), (10, 5, 4), (12, 6, 6),
                                             (19, 3, 4), (20, 3, 4), (21, 4, 6), (22, 3, 4)])
def test_sorted_greedy_equals_brute_force(N, n_act, h_min):
    ref = brute_force_greedy(N, n_act, h_min)
    got = coding.sorted_greedy(N, n_act, h_min)
    assert got.tolist() == ref
    assert coding.sorted_greedy(N, n_act, h_min, max_kept=5).tolist() == ref[:5]


@pytest.mark.parametrize("K, N, n_act, h_min", [(10, 10, 4, 4), (8, 12, 6, 6), (12, 20, 3, 4), (20, 21, 4, 6)])
def test_generate_picks_from_the_greedy_set(K, N, n_act, h_min):
    scheme = generate(K, N, n_act, h_min)
    ints = as_ints(scheme)
    assert set(ints) <= set(brute_force_greedy(N, n_act, h_min))
    assert ints == sorted(ints)
    assert len(ints) == K and all(w.bit_count() == n_act for w in ints)
    assert naive_min_distance(ints) >= h_min


def test_generate_exhaustive_step_is_optimal():
    # (K, N, n_act, h_min) = (6, 8, 4, 4): G is small, so lines 19-27 run exhaustively
    G = brute_force_greedy(8, 4, 4)
    best = min(max(s) - min(s) for s in (
        [sum((w >> (7 - n)) & 1 for w in sub) for n in range(8)] for sub in itertools.combinations(G, 6)))
    scheme = generate(6, 8, 4, 4)
    sums = naive_column_sums(scheme)
    assert max(sums) - min(sums) == best


@pytest.mark.parametrize("K, N, n_act, h_min", [(100, 20, 8, 8), (100, 20, 4, 4)])
def test_generate_cifar100_reaches_the_paper(K, N, n_act, h_min):
    scheme = generate(K, N, n_act, h_min)
    assert naive_min_distance(as_ints(scheme)) >= h_min
    assert len(set(naive_column_sums(scheme))) == 1  # S_min = S_max, as in the paper


def test_generate_is_deterministic_for_a_seed():
    assert generate(20, 12, 5, 4, seed=3) == generate(20, 12, 5, 4, seed=3)


# ----------------------------------------------------------------------------- scheme_for


@pytest.mark.parametrize("n_act", [2, 4])
def test_scheme_for_non_paper_ratios(n_act):
    scheme = scheme_for(10, 10, n_act)
    ints = as_ints(scheme)
    assert all(w.bit_count() == n_act for w in ints)
    # largest possible: for 2/10 distances are at most 4 and 2·10 ones can't all be disjoint
    # (only 5 disjoint pairs), so H_min = 2; for 4/10 H_min = 6 would need 4-sets meeting in
    # <= 1 point, at most floor(10/4·floor(9/3)) = 7 < 10 of them (Johnson), so H_min = 4
    assert naive_min_distance(ints) == {2: 2, 4: 4}[n_act]
    assert len(set(naive_column_sums(scheme))) == 1


@pytest.mark.parametrize("K, N, n_act", [(10, 12, 5), (10, 20, 8), (20, 16, 4), (10, 8, 3)])
def test_scheme_for_is_balanced_like_the_paper(K, N, n_act):
    scheme = scheme_for(K, N, n_act)
    ints = as_ints(scheme)
    assert len(set(ints)) == K and all(w.bit_count() == n_act for w in ints)
    sums = naive_column_sums(scheme)
    assert max(sums) - min(sums) <= 2 and min(sums) >= 1
    h = naive_min_distance(ints)
    # and it is the largest such H_min: at h + 2 the naive Algorithm 1 keeps fewer than K words (then
    # generate must refuse), or generate's scheme is unbalanced
    if h + 2 > 2 * min(n_act, N - n_act):
        return  # no two words of this weight are farther apart
    if len(brute_force_greedy(N, n_act, h + 2)) < K:
        with pytest.raises(ValueError, match="fewer than K"):
            generate(K, N, n_act, h + 2)
    else:
        higher = naive_column_sums(generate(K, N, n_act, h + 2))
        assert max(higher) - min(higher) > 2 or min(higher) == 0


# ----------------------------------------------------------------------------- BCH


def test_extended_bch_32_11_12():
    code = coding.extended_bch_words(5, 11)
    ints = code.tolist()
    assert len(ints) == 2**11 and len(set(ints)) == 2**11
    weights = [w.bit_count() for w in ints]
    assert min(w for w in weights if w) == 12
    assert weights.count(16) == 1054 and weights.count(12) == 496
    as_set = set(ints)
    rng = random.Random(0)
    for _ in range(200):  # linear, and cyclic on the 31 non-parity bits
        a, b = rng.choice(ints), rng.choice(ints)
        assert a ^ b in as_set
        low = a & (2**31 - 1)
        rot = ((low << 1) | (low >> 30)) & (2**31 - 1)
        assert (rot | (a & 2**31)) in as_set
    w16 = [w for w in ints if w.bit_count() == 16]
    assert naive_min_distance(w16) >= 12
    assert {sum((w >> n) & 1 for w in w16) for n in range(32)} == {527}


def test_extended_bch_32_21_6_on_a_sample():
    code = coding.extended_bch_words(5, 5)
    assert len(code) == 2**21
    assert int(np.bitwise_count(code[1:]).min()) == 6
    w8 = coding.extended_bch_words(5, 5, weight=8).tolist()
    assert len(w8) == 10540
    sample = random.Random(1).sample(w8, 400)
    assert naive_min_distance(sample) >= 6
    # the generator polynomial of the BCH [31, 21] code: 1 + x^3 + x^5 + x^6 + x^8 + x^9 + x^10
    assert coding.bch_generator(5, 5) == sum(1 << i for i in (0, 3, 5, 6, 8, 9, 10))


# ----------------------------------------------------------------------------- CodingScheme


def test_scheme_basics(tmp_path):
    scheme = CodingScheme([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]])
    assert (scheme.K, scheme.N, scheme.n_act, scheme.ratio, scheme.r) == (3, 4, 2, "2/4", 0.5)
    assert scheme.min_hamming() == 2
    assert scheme.column_sums().tolist() == [1, 2, 2, 1]
    cw = scheme.codewords()
    assert cw.dtype == torch.float32 and cw.tolist() == [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    assert scheme.to_frame(["a", "b", "c"])["codeword"].tolist() == ["1100", "0110", "0011"]
    assert str(scheme).splitlines()[1:] == ["1100", "0110", "0011"]
    path = tmp_path / "s.txt"
    scheme.save(path)
    assert path.read_text().split() == ["1100", "0110", "0011"]
    assert CodingScheme.load(path) == scheme and hash(CodingScheme.load(path)) == hash(scheme)
    with pytest.raises(ValueError):
        scheme.table[0, 0] = False
    with pytest.raises(AttributeError):
        scheme.table = np.zeros((3, 4), bool)


@pytest.mark.parametrize("table, match", [
    ([[1, 1, 0], [1, 0, 0], [0, 1, 1]], r"rule A.*\[1\]"),
    ([[1, 1, 0], [0, 1, 1], [1, 1, 0]], r"duplicate.*\[0, 2\]"),
    ([[1, 2, 0], [0, 1, 1]], "0/1"),
    ([1, 0, 1], "K×N"),
    ([[1, 0, 1]], "K >= 2"),
])
def test_scheme_rejects_bad_tables(table, match):
    with pytest.raises(ValueError, match=match):
        CodingScheme(table)


def test_load_rejects_bad_files(tmp_path):
    (tmp_path / "a.txt").write_text("0101\n01x1\n")
    with pytest.raises(ValueError, match="'0'/'1'"):
        CodingScheme.load(tmp_path / "a.txt")
    (tmp_path / "b.txt").write_text("0101\n011\n")
    with pytest.raises(ValueError, match="lengths"):
        CodingScheme.load(tmp_path / "b.txt")


@pytest.mark.parametrize("call, match", [
    (lambda: generate(10, 4, 2, 2), r"C\(4, 2\) = 6"),
    (lambda: generate(10, 10, 5, 8), "fewer than K=10"),
    (lambda: generate(10, 10, 10, 2), "r = 1"),
    (lambda: generate(10, 10, 3, 8), "at most 6 apart"),
    (lambda: generate(10, 10, 3, 0), "h_min"),
    (lambda: generate(1, 10, 3, 2), "K=1"),
    (lambda: generate(10, 10, 3.0, 2), "integer"),
    (lambda: generate(10, 10, 3, 2, max_kept=5), "max_kept"),
    (lambda: generate(10, 41, 3, 2), "N <= 40"),
    (lambda: paper_scheme("mnist", "5/10"), "allowed"),
    (lambda: paper_scheme("cifar10", "4/10"), r"allowed: \('5/10', '3/10'\)"),
    (lambda: paper_scheme("cifar10", "10/10"), "r = 1"),
    (lambda: paper_scheme("imagenet", "32/32"), "plain ResNeXt"),
    (lambda: paper_scheme("cifar10", "half"), "N_act/N"),
    (lambda: scheme_for(10, 10, 10), "r = 1"),
    (lambda: scheme_for(100, 10, 5, dataset="cifar10"), "K=100"),
    (lambda: scheme_for(10, 10, 3, dataset="svhn"), "allowed"),
    (lambda: coding.extended_bch_words(7, 5), "m=7"),
    (lambda: paper_scheme("cifar10", "5/10").to_frame(["a"]), "class_names"),
])
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
