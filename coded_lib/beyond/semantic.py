"""Semantic coding schemes: classes close to each other share subNNs (beyond the paper).

The paper's schemes ignore what the classes are; its appendix (F.3) suspects that this is why the
subNNs of early blocks hardly specialize, and that schemes built from class similarity might help.
Here a scheme is built in two steps:

1. :func:`even_groups`, the clustering of the SSAL supplement (section A): split the K labels
   into G groups of (nearly) equal size from a K×K distance matrix;
2. :func:`semantic_scheme`: codewords that obey the paper's rules (SPEC §1.2: every class has
   N_act ones, the column sums are as balanced as the class-agnostic scheme's, H_min at least
   the agnostic scheme's) and, within those rules, give the classes of one group as many shared
   active subNNs as possible.

The distances come from a trained network (``coded_lib.analysis.semantic.class_distances``).
"""
from __future__ import annotations

import itertools

import numpy as np

from ..coding import CodingScheme, _check_shape, scheme_for

def even_groups(distances, n_groups: int, seed: int = 0) -> list[list[int]]:
    """SSAL's clustering (supplement, section A): the K labels in ``n_groups`` groups of even size.

    ``distances``: a symmetric K×K matrix (zero diagonal). Initialization: the label farthest on
    average from all others opens the first group; each next group is opened by the remaining
    label whose smallest average distance to the opened groups is largest. Clustering: the
    remaining label with the smallest average distance to any group goes next, into that group
    if it is not full, else into the nearest group that is not; ties between groups are broken
    at random (``seed``). A group is full at ceil(K/G) labels; when G does not divide K, only
    K mod G groups may reach that size (the others stop at floor(K/G)), so the sizes differ by at
    most one (SSAL's cap alone would allow 4, 4, 2 for 10 labels in 3 groups).
    Returns the groups as sorted lists of labels, ordered by their smallest label.
    """
    d = np.asarray(distances, dtype=float)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"distances must be a K×K matrix; got shape {d.shape}")
    if not np.isfinite(d).all() or not np.allclose(d, d.T) or (d < 0).any():
        raise ValueError("distances must be finite, symmetric and non-negative")
    K = d.shape[0]
    if not isinstance(n_groups, int) or isinstance(n_groups, bool) or not 1 <= n_groups <= K:
        raise ValueError(f"n_groups={n_groups!r}; allowed: an integer in 1..K={K}")
    rng = np.random.default_rng(seed)
    small, n_large = K // n_groups, K % n_groups
    groups: list[list[int]] = [[int(np.argmax(d.sum(1)))]]
    left = [k for k in range(K) if k != groups[0][0]]

    def mean_dist(label):  # average distance of a label to each group
        return np.array([d[label, g].mean() for g in groups])

    while len(groups) < n_groups:
        far = max(left, key=lambda k: mean_dist(k).min())
        groups.append([far])
        left.remove(far)
    while left:
        label = min(left, key=lambda k: mean_dist(k).min())
        large = sum(len(g) > small for g in groups)
        cap = [small + 1 if (len(g) > small or large < n_large) else small for g in groups]
        dist = mean_dist(label)
        open_ = [i for i, g in enumerate(groups) if len(g) < cap[i]]
        best = min(dist[i] for i in open_)
        ties = [i for i in open_ if np.isclose(dist[i], best)]
        groups[ties[int(rng.integers(len(ties)))] if len(ties) > 1 else ties[0]].append(label)
        left.remove(label)
    return sorted((sorted(g) for g in groups), key=lambda g: g[0])


def group_labels(groups, K: int) -> np.ndarray:
    """[K] group index of each class; ``groups`` must partition 0..K-1."""
    flat = sorted(c for g in groups for c in g)
    if flat != list(range(K)):
        raise ValueError(f"groups must partition the classes 0..{K - 1}; got {groups}")
    labels = np.empty(K, dtype=np.int64)
    for i, g in enumerate(groups):
        labels[list(g)] = i
    return labels


def shared_subnns(scheme: CodingScheme, groups) -> dict[str, float]:
    """Mean number of active subNNs two classes share, within a group and across groups."""
    labels = group_labels(groups, scheme.K)
    t = scheme.table.astype(np.int64)
    shared = t @ t.T
    i, j = np.triu_indices(scheme.K, 1)
    same = labels[i] == labels[j]
    return {"within": float(shared[i, j][same].mean()) if same.any() else float("nan"),
            "across": float(shared[i, j][~same].mean()) if (~same).any() else float("nan")}


def _key(table, same, n_act, h_target):
    """(column spread, H_min shortfall, -shared active subNNs within groups): smaller is better."""
    sums = table.sum(0)
    overlap = table @ table.T
    dist = 2 * (n_act - overlap)
    np.fill_diagonal(dist, 10**6)
    within = int((overlap * same).sum()) // 2
    return int(sums.max() - sums.min()), max(0, h_target - int(dist.min())), -within


def semantic_scheme(groups, N: int, n_act: int, h_min: int | None = None, restarts: int = 20,
                    seed: int = 0) -> CodingScheme:
    """A coding scheme whose classes in one group share as many active subNNs as the rules allow.

    ``groups``: a partition of the K classes (e.g. from :func:`even_groups`). The search starts
    from the class-agnostic scheme of the same ratio (``coding.scheme_for(K, N, n_act)``, which
    meets rules A-C) and only makes moves that keep every row's N_act ones (rule A) and every
    column sum (rule C, so S_min and S_max stay the agnostic scheme's): two classes of different
    groups swap codewords, or two classes exchange one active subNN each. Among those it
    minimizes the shortfall of H_min below ``h_min`` (rule B; default: the agnostic scheme's
    H_min), then maximizes the number of active subNNs shared by pairs of classes of one group.
    Steepest descent from the agnostic scheme and from ``restarts - 1`` random permutations of its
    rows (``seed``); the best result is returned (exact for tiny cases, which
    ``tests/test_beyond.py`` checks against brute force).
    """
    K = sum(len(g) for g in groups)
    labels = group_labels(groups, K)
    _check_shape(K, N, n_act)
    agnostic = scheme_for(K, N, n_act)
    start = agnostic.table.astype(np.int64)
    if h_min is None:
        h_min = agnostic.min_hamming()
    h_min = max(h_min, 2)  # distinct codewords of equal weight are at least 2 apart
    same = (labels[:, None] == labels[None, :]).astype(np.int64)
    np.fill_diagonal(same, 0)
    rng = np.random.default_rng(seed)
    best, best_key = None, None
    for r in range(restarts):
        table = start[rng.permutation(K)] if r else start.copy()
        key = _key(table, same, n_act, h_min)
        while True:  # steepest descent: the best single move, until none improves
            step, step_key = None, key
            for new in _moves(table, labels):
                k = _key(new, same, n_act, h_min)
                if k < step_key:
                    step, step_key = new, k
            if step is None:
                break
            table, key = step, step_key
        if best_key is None or key < best_key:
            best, best_key = table, key
    return CodingScheme(best)


def _moves(table, labels):
    """Every table one move away: two classes of different groups swap codewords, or two classes
    exchange one active subNN each (i turns a off and b on, j the opposite): both keep every row's
    N_act ones (rule A) and every column sum (rule C)."""
    K = len(table)
    for i, j in itertools.combinations(range(K), 2):
        if labels[i] != labels[j]:
            new = table.copy()
            new[[i, j]] = table[[j, i]]
            yield new
        for a in np.nonzero(table[i] > table[j])[0]:
            for b in np.nonzero(table[j] > table[i])[0]:
                new = table.copy()
                new[i, a], new[i, b], new[j, a], new[j, b] = 0, 1, 1, 0
                yield new


def semantic_schemes(distances, stages, seed: int = 0) -> dict[str, dict]:
    """One semantic scheme per coded stage: {stage name: {"groups", "scheme"}}.

    ``stages``: (name, N, N_act) of each coded stage. Its classes are split into
    G = round(N / N_act) groups (:func:`even_groups`), so that a group's share of the N subNNs is
    about one codeword's N_act: a class can keep most of its active subNNs among its group's.
    """
    out = {}
    for name, n, n_act in stages:
        groups = even_groups(distances, max(1, round(n / n_act)), seed=seed)
        out[name] = {"groups": groups, "scheme": semantic_scheme(groups, n, n_act, seed=seed)}
    return out
