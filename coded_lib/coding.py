"""Coding schemes of Coded ResNeXt (SPEC §1.2, appendix A of the paper).

A coding scheme of a coded block with ratio r = N_act/N maps each of the K classes
to an N-bit codeword; bit n says whether subNN n should be active for that class,
i.e. the target ``(w_k)_n`` of the coding loss (Eq. 5). The three rules of the paper:

A) every codeword has exactly N_act ones (mandatory, enforced by :class:`CodingScheme`);
B) the minimum pairwise Hamming distance H_min is as large as possible;
C) the column sums (how many classes each subNN serves) are as equal as possible.

Bit convention: codeword ``'0101…'`` is row ``[0, 1, 0, 1, …]`` of the table, and as an
integer it is read with the first column as the most significant bit, which is the
order Algorithm 1 sorts by.
"""
from __future__ import annotations

import functools
import importlib.resources
import itertools
import math
import re
import sys
from pathlib import Path

import numpy as np
import torch

MAX_N = 40  # sorted enumeration of all C(N, N_act) words is the cost of Algorithm 1


# ----------------------------------------------------------------------------- scheme


class CodingScheme:
    """An immutable K×N 0/1 table, one codeword per class (rule A enforced).

    ``table`` is any K×N array-like of 0/1 (or bools); it is stored as a read-only
    bool numpy array. Rows with unequal numbers of ones (rule A) or duplicate rows
    raise ``ValueError`` naming the rows.
    """

    __slots__ = ("table",)

    def __init__(self, table):
        t = np.asarray(table)
        if t.ndim != 2:
            raise ValueError(f"a coding scheme is a K×N table; got an array of shape {t.shape}")
        if t.shape[0] < 2 or t.shape[1] < 1:
            raise ValueError(f"a coding scheme needs K >= 2 classes and N >= 1 subNNs; got shape {t.shape}")
        if not np.isin(t, (0, 1)).all():
            raise ValueError("a coding scheme holds only 0/1 entries; got values "
                             f"{sorted(set(np.unique(t).tolist()) - {0, 1})[:5]}")
        t = t.astype(bool)
        ones = t.sum(axis=1)
        if (ones != ones[0]).any():
            counts = {int(c): np.nonzero(ones == c)[0].tolist() for c in np.unique(ones)}
            raise ValueError(f"rule A: every codeword needs the same number of ones; rows by count: {counts}")
        ints = _to_ints(t)
        _, first, counts = np.unique(ints, return_index=True, return_counts=True)
        if (counts > 1).any():
            dups = [np.nonzero(ints == ints[i])[0].tolist() for i in first[counts > 1]]
            raise ValueError(f"duplicate codewords: rows {dups} are equal")
        t.setflags(write=False)
        object.__setattr__(self, "table", t)

    def __setattr__(self, name, value):
        raise AttributeError("CodingScheme is immutable")

    # immutable, so copies (e.g. copy.deepcopy of a model) can share it
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    @property
    def K(self) -> int:
        return self.table.shape[0]

    @property
    def N(self) -> int:
        return self.table.shape[1]

    @property
    def n_act(self) -> int:
        return int(self.table[0].sum())

    @property
    def ratio(self) -> str:
        return f"{self.n_act}/{self.N}"

    @property
    def r(self) -> float:
        return self.n_act / self.N

    def min_hamming(self) -> int:
        """H_min, the smallest Hamming distance between two codewords (rule B)."""
        t = self.table.astype(np.float32)
        best = self.N
        for start in range(0, self.K, 1024):  # blocks of rows keep the K×K distances small
            # d(a, b) = |a| + |b| - 2 a·b, and every |a| is N_act (rule A)
            d = 2 * self.n_act - 2 * (t[start:start + 1024] @ t.T)
            d[np.arange(len(d)), np.arange(start, start + len(d))] = self.N + 1
            best = min(best, int(d.min()))
        return best

    def column_sums(self) -> np.ndarray:
        """Number of classes each subNN serves (rule C: S_min = min, S_max = max)."""
        return self.table.sum(axis=0).astype(np.int64)

    def codewords(self) -> torch.Tensor:
        """The table as a float tensor [K, N] of 0./1., the targets w_k of Eq. 5."""
        return torch.from_numpy(self.table.astype(np.float32))

    def strings(self) -> list[str]:
        return ["".join("1" if b else "0" for b in row) for row in self.table]

    def to_frame(self, class_names=None):
        """A pandas DataFrame with one '0101…' codeword per class, for notebooks."""
        import pandas as pd

        if class_names is None:
            class_names = range(self.K)
        class_names = list(class_names)
        if len(class_names) != self.K:
            raise ValueError(f"class_names has {len(class_names)} names; the scheme has K={self.K} classes")
        return pd.DataFrame({"codeword": self.strings()}, index=pd.Index(class_names, name="class"))

    def summary(self) -> str:
        s = self.column_sums()
        return (f"CodingScheme(K={self.K}, N={self.N}, r={self.ratio}, H_min={self.min_hamming()}, "
                f"S_min={s.min()}, S_max={s.max()})")

    def __repr__(self) -> str:
        return self.summary()

    def __str__(self) -> str:
        return "\n".join([self.summary(), *self.strings()])

    def __eq__(self, other) -> bool:
        return isinstance(other, CodingScheme) and np.array_equal(self.table, other.table)

    def __hash__(self) -> int:
        return hash((self.table.shape, self.table.tobytes()))

    def save(self, path) -> None:
        """Write one codeword per line, as '0'/'1' characters."""
        Path(path).write_text("\n".join(self.strings()) + "\n")

    @classmethod
    def load(cls, path) -> "CodingScheme":
        """Read a file written by :meth:`save` (blank lines and '#' comments are skipped)."""
        return cls.from_strings(Path(path).read_text().splitlines())

    @classmethod
    def from_strings(cls, lines) -> "CodingScheme":
        rows = [ln.strip() for ln in lines]
        rows = [ln for ln in rows if ln and not ln.startswith("#")]
        bad = [i for i, ln in enumerate(rows) if set(ln) - {"0", "1"}]
        if bad:
            raise ValueError(f"codewords are strings of '0'/'1'; rows {bad[:5]} are not (e.g. {rows[bad[0]]!r})")
        lengths = {len(ln) for ln in rows}
        if len(lengths) > 1:
            raise ValueError(f"codewords of different lengths {sorted(lengths)}")
        return cls(np.array([[c == "1" for c in ln] for ln in rows], dtype=bool))


def _to_ints(table: np.ndarray) -> np.ndarray:
    """Rows as uint64 integers, first column = most significant bit."""
    t = np.asarray(table, dtype=bool)
    if t.shape[1] > 64:
        raise ValueError(f"codewords longer than 64 bits (N={t.shape[1]}) are not supported")
    weights = np.uint64(1) << np.arange(t.shape[1] - 1, -1, -1, dtype=np.uint64)
    return (t.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


def _from_ints(ints, N: int) -> np.ndarray:
    shifts = np.arange(N - 1, -1, -1, dtype=np.uint64)
    return ((np.asarray(ints, dtype=np.uint64)[:, None] >> shifts) & np.uint64(1)).astype(bool)


# ----------------------------------------------------------------------------- Algorithm 1


def _check_shape(K, N, n_act):
    for name, v in (("K", K), ("N", N), ("n_act", n_act)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise ValueError(f"{name} must be an integer; got {v!r}")
    if K < 2:
        raise ValueError(f"K={K}: a coding scheme needs at least 2 classes")
    if N < 2:
        raise ValueError(f"N={N}: a coded block needs at least 2 subNNs")
    if n_act == N:
        raise ValueError(f"n_act=N={N} is the ratio r = 1: such blocks are plain ResNeXt blocks "
                         "(no energy normalization, no coding loss) and need no coding scheme")
    if not 1 <= n_act < N:
        raise ValueError(f"n_act={n_act} must satisfy 1 <= n_act < N={N}")
    if math.comb(N, n_act) < K:
        raise ValueError(f"only C({N}, {n_act}) = {math.comb(N, n_act)} codewords have {n_act} ones "
                         f"out of {N}, fewer than K={K} classes")


def sorted_greedy(N: int, n_act: int, h_min: int, max_kept: int | None = None) -> np.ndarray:
    """Lines 11-16 of Algorithm 1: the greedy set G of codewords, as sorted uint64 integers.

    Scans all C(N, n_act) words with ``n_act`` ones in increasing integer order and keeps
    each word whose distance to every word kept so far is >= ``h_min``. With ``max_kept``
    the scan stops as soon as that many words are kept (they are the first ``max_kept``
    words of the full G, since the scan is sequential).

    Vectorised over blocks of the scan: the words are split into a fixed high part
    (bits >= q) and a low part (the q low bits, weight s). Within a block the high part
    is common, so d(c, g) = d(high, g_high) + d(c_low, g_low) and only low parts are
    compared. Kept words g whose lower bound d(high, g_high) + |s - |g_low|| is already
    >= h_min cannot reject anything in the block and are skipped; the others are tried
    nearest first, which rejects most candidates after one or two comparisons.
    """
    if N > MAX_N:
        raise ValueError(f"N={N}: the sorted enumeration of Algorithm 1 is limited to N <= {MAX_N}")
    if not 0 <= n_act <= N or h_min < 1:
        raise ValueError(f"need 0 <= n_act <= N and h_min >= 1; got N={N}, n_act={n_act}, h_min={h_min}")
    q = min(N, 18)
    x = np.arange(1 << q, dtype=np.uint32)
    weight = np.bitwise_count(x)
    lows = [x[weight == s] for s in range(q + 1)]  # each already in increasing order
    kept_hi = np.zeros(0, dtype=np.int64)
    kept_lo = np.zeros(0, dtype=np.uint32)
    kept_s = np.zeros(0, dtype=np.int64)
    # 2^(N-18) blocks: beyond N = 24 the scan takes minutes to hours (e.g. C(40, 20) ~ 1.4e11 words), so it
    # shows its progress and an estimate of the time left, on a terminal only (never in a notebook's output)
    from tqdm import tqdm

    blocks = tqdm(range(1 << (N - q)), desc=f"Algorithm 1: scanning the C({N}, {n_act}) = {math.comb(N, n_act):.3g} words",
                  unit="block", file=sys.stderr, disable=N <= 24 or not sys.stderr.isatty(), mininterval=2)
    for hi in blocks:
        s = n_act - hi.bit_count()
        if not 0 <= s <= q:
            continue
        cand = lows[s]
        if len(kept_hi):
            dh = np.bitwise_count(kept_hi ^ hi).astype(np.int64)
            bound = dh + np.abs(kept_s - s)
            idx = np.nonzero(bound < h_min)[0]
            idx = idx[np.argsort(bound[idx], kind="stable")]
            need = (h_min - dh[idx]).astype(np.uint8)
            rel = kept_lo[idx]
            i, g = 0, 1
            # groups of growing size: the first (nearest) kept words reject almost everything
            while i < len(rel) and len(cand):
                d = np.bitwise_count(rel[i:i + g, None] ^ cand[None, :])
                cand = cand[np.logical_and.reduce(d >= need[i:i + g, None], axis=0)]
                i += g
                g = min(2 * g, 64)
        new = []
        while len(cand):  # the candidates left are far from all earlier blocks' words
            c = cand[0]
            new.append(c)
            cand = cand[1:]
            cand = cand[np.bitwise_count(cand ^ c) >= h_min]
        if new:
            new = np.array(new, dtype=np.uint32)
            kept_hi = np.concatenate([kept_hi, np.full(len(new), hi, dtype=np.int64)])
            kept_lo = np.concatenate([kept_lo, new])
            kept_s = np.concatenate([kept_s, np.bitwise_count(new).astype(np.int64)])
            if max_kept is not None and len(kept_hi) >= max_kept:
                break
    blocks.close()
    kept = (kept_hi.astype(np.uint64) << np.uint64(q)) | kept_lo.astype(np.uint64)
    return kept[:max_kept] if max_kept is not None else kept


def select_balanced(words, N: int, K: int, h_min: int, seed: int = 0,
                    exhaustive_limit: int = 20_000) -> np.ndarray:
    """Lines 19-27 of Algorithm 1: indices of K of ``words`` minimizing S_max - S_min.

    ``words`` are uint64 codewords of length N, all with the same weight. Exhaustive over all
    K-subsets when there are at most ``exhaustive_limit`` of them (ties: fewer pairs at exactly
    ``h_min``, then the first subset). Otherwise heuristic, in three steps:

    1. greedy: add the word whose columns carry the smallest current column sums (this keeps
       the sums balanced), preferring words with fewer chosen words at exactly ``h_min``,
       ties broken at random with ``seed``;
    2. exact repair by swapping one or two words (:func:`_swap_fix`);
    3. if still unbalanced, a bounded ruin-and-recreate search (:func:`_ruin_recreate`).

    All steps are deterministic given ``seed``. Returns the chosen indices in increasing order.
    """
    words = np.asarray(words, dtype=np.uint64)
    M = len(words)
    if M < K:
        raise ValueError(f"only {M} codewords to choose K={K} from")
    if M == K:
        return np.arange(M)
    bits = _from_ints(words, N).astype(np.int64)
    if math.comb(M, K) <= exhaustive_limit and math.comb(M, K) * K * K <= 10**8:
        return _select_exhaustive(words, bits, K, h_min)
    rng = np.random.default_rng(seed)
    order_key = rng.permutation(M)
    chosen = np.zeros(M, dtype=bool)
    sums = np.zeros(N, dtype=np.int64)
    close = np.zeros(M, dtype=np.int64)
    for _ in range(K):
        load = bits @ sums
        key = (load * (K + 1) + close) * M + order_key
        key[chosen] = np.iinfo(np.int64).max
        j = int(np.argmin(key))
        chosen[j] = True
        sums += bits[j]
        close += np.bitwise_count(words ^ words[j]) == h_min
    _swap_fix(bits, chosen, rng)
    _ruin_recreate(bits, chosen, rng)
    return np.nonzero(chosen)[0]


def _select_exhaustive(words, bits, K, h_min):
    M = len(words)
    at_h = (np.bitwise_count(words[:, None] ^ words[None, :]) == h_min).astype(np.int64)
    best, best_key = None, None
    combos = itertools.combinations(range(M), K)
    size = max(1, 2_000_000 // (K * K))  # the pair counts below take size·K² entries
    while True:
        chunk = np.array(list(itertools.islice(combos, size)), dtype=np.int64)
        if not len(chunk):
            break
        sums = bits[chunk].sum(axis=1)
        spread = sums.max(axis=1) - sums.min(axis=1)
        pairs = at_h[chunk[:, :, None], chunk[:, None, :]].sum(axis=(1, 2)) // 2
        key = spread * (K * K + 1) + pairs
        i = int(np.argmin(key))  # argmin returns the first of equal keys
        if best_key is None or key[i] < best_key:
            best, best_key = chunk[i], key[i]
    return best


def _balanced_target(sums: np.ndarray) -> np.ndarray:
    """The column sums closest to ``sums`` with the same total and S_max - S_min <= 1."""
    total, n = int(sums.sum()), len(sums)
    target = np.full(n, total // n, dtype=np.int64)
    target[np.argsort(-sums, kind="stable")[: total - n * (total // n)]] += 1
    return target


def _swap_fix(bits, chosen, rng, rounds=4, max_pairs=1_000_000) -> None:
    """Exact repair of rule C by swapping one or two chosen words for unchosen ones.

    Looks for words with b_j - b_i = t or b_j1 + b_j2 - b_i1 - b_i2 = t, where t is what the
    column sums lack to be balanced (:func:`_balanced_target`). Both sides are hashed to one
    integer by a random linear map (mod 2^64), so matching is a sorted search over all pairs
    (meet in the middle), and each hit is verified on the bits. Up to ``rounds`` tries, each
    on a random subsample of at most ``max_pairs`` pairs a side. Works in place on ``chosen``.
    """
    n = bits.shape[1]
    proj = rng.integers(0, 2**63, size=n, dtype=np.uint64)
    keys = (bits.astype(np.uint64) * proj).sum(axis=1, dtype=np.uint64)
    side = int((1 + math.isqrt(1 + 8 * max_pairs)) // 2)
    for _ in range(rounds):
        sums = bits[chosen].sum(axis=0)
        t = _balanced_target(sums) - sums
        if not t.any():
            return
        kt = (t.astype(np.uint64) * proj).sum(dtype=np.uint64)
        inn, out = np.nonzero(chosen)[0], np.nonzero(~chosen)[0]
        # one word for one
        need = keys[out] - kt
        for k in rng.permutation(np.nonzero(np.isin(need, keys[inn]))[0]):
            i = inn[keys[inn] == need[k]]
            ok = i[(bits[out[k]] - bits[i] == t).all(axis=1)]
            if len(ok):
                chosen[ok[0]], chosen[out[k]] = False, True
                return
        # two words for two
        inn = rng.permutation(inn)[:side]
        out = rng.permutation(out)[:side]
        a1, a2 = np.triu_indices(len(inn), 1)
        b1, b2 = np.triu_indices(len(out), 1)
        a_key = keys[inn[a1]] + keys[inn[a2]]
        b_key = keys[out[b1]] + keys[out[b2]] - kt
        order = np.argsort(a_key)
        a_sorted = a_key[order]
        pos = np.minimum(np.searchsorted(a_sorted, b_key), len(a_sorted) - 1)
        for k in np.nonzero(a_sorted[pos] == b_key)[0]:
            j1, j2 = out[b1[k]], out[b2[k]]
            q = order[pos[k]:np.searchsorted(a_sorted, b_key[k], side="right")]
            i1, i2 = inn[a1[q]], inn[a2[q]]
            ok = np.nonzero((bits[j1] + bits[j2] - bits[i1] - bits[i2] == t).all(axis=1))[0]
            if len(ok):
                chosen[[i1[ok[0]], i2[ok[0]]]] = False
                chosen[[j1, j2]] = True
                break


def _ruin_recreate(bits, chosen, rng, work=6e7, max_iter=1000) -> None:
    """Drop a few random chosen words, refill greedily (smallest column load, random ties),
    keep the result when the imbalance is not worse; repeat. Works in place on ``chosen``.

    The imbalance is (units of column sums outside [floor(avg), ceil(avg)], sum(S²)). The
    number of tries is bounded by ``work`` (≈ multiply-adds) so large sets stay fast;
    a final :func:`_swap_fix` gets one more chance at the result.
    """
    M, N = bits.shape
    K = int(chosen.sum())
    if K < 2:
        return
    bf = bits.astype(np.float32)

    def imbalance(s):
        target = _balanced_target(s)
        lo, hi = target.min(), target.max()
        return int((np.maximum(s - hi, 0) + np.maximum(lo - s, 0)).sum()), int((s * s).sum())

    sums = bits[chosen].sum(axis=0)
    cost = imbalance(sums)
    r_max = max(2, min(40, K // 2))
    iters = int(min(max_iter, max(200, work / (M * N * r_max / 2))))
    for _ in range(iters):
        if cost[0] == 0:
            return
        new = chosen.copy()
        r = int(rng.integers(2, r_max + 1))
        new[rng.choice(np.nonzero(new)[0], r, replace=False)] = False
        s = bits[new].sum(axis=0)
        for _ in range(r):
            load = bf @ s.astype(np.float32) + rng.random(M, dtype=np.float32) * 0.5
            load[new] = np.inf
            j = int(np.argmin(load))
            new[j] = True
            s += bits[j]
        c = imbalance(s)
        if c <= cost:
            chosen[:], cost = new, c
    _swap_fix(bits, chosen, rng, rounds=1)


def generate(K: int, N: int, n_act: int, h_min: int, seed: int = 0, max_kept: int | None = None) -> CodingScheme:
    """Algorithm 1 of the appendix: a K-class coding scheme with ratio n_act/N and H_min >= h_min.

    1. Enumerate all codewords with ``n_act`` ones in sorted (integer) order and greedily keep
       each one at distance >= ``h_min`` from all kept ones (:func:`sorted_greedy`; sorted order
       packs far more words than random order).
    2. Choose K of the kept set G with S_max - S_min as small as possible
       (:func:`select_balanced`: exhaustive when feasible, else greedy + swap search; ``seed``
       breaks the greedy's ties).

    By default the scan covers all C(N, n_act) words, which is the paper's algorithm; on one
    CPU core (numpy, no compiled extension) it takes about 10-20 s for (1000, 32, 16, 10),
    2-5 s for (1000, 32, 8, 6) and milliseconds for N <= 20.
    ``max_kept`` stops the scan once that many words are kept (e.g. ``3 * K``); this is faster
    but G then lacks words with ones in the first columns, so the balance can suffer.
    The rows of the result are in increasing integer order (class k gets the k-th word).
    Raises ``ValueError`` when C(N, n_act) < K or G has fewer than K words.
    """
    _check_shape(K, N, n_act)
    if not isinstance(h_min, (int, np.integer)) or h_min < 1:
        raise ValueError(f"h_min must be a positive integer; got {h_min!r}")
    if max_kept is not None and max_kept < K:
        raise ValueError(f"max_kept={max_kept} must be at least K={K}")
    top = 2 * min(n_act, N - n_act)
    if h_min > top:
        raise ValueError(f"h_min={h_min}: two words with {n_act} ones out of {N} are at most {top} apart")
    words = sorted_greedy(N, n_act, h_min, max_kept)
    if len(words) < K:
        raise ValueError(f"Algorithm 1 finds only {len(words)} codewords with {n_act} ones out of {N} "
                         f"at pairwise distance >= {h_min}, fewer than K={K}; lower h_min")
    idx = select_balanced(words, N, K, h_min, seed=seed)
    return CodingScheme(_from_ints(words[idx], N))


# ----------------------------------------------------------------------------- BCH codes

_PRIMITIVE = {3: 0b1011, 4: 0b10011, 5: 0b100101, 6: 0b1000011}  # primitive polynomials over GF(2)


def _clmul(a: int, b: int) -> int:
    """Product of two GF(2) polynomials given as integers (bit i = coefficient of x^i)."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        a <<= 1
        b >>= 1
    return out


def bch_generator(m: int, designed_distance: int) -> int:
    """Generator polynomial (as an integer) of the narrow-sense primitive binary BCH code of
    length 2^m - 1: the lcm of the minimal polynomials of alpha^1 … alpha^(designed_distance - 1)."""
    if m not in _PRIMITIVE:
        raise ValueError(f"m={m}: supported field sizes are m in {sorted(_PRIMITIVE)}")
    n = (1 << m) - 1
    if not 2 <= designed_distance <= n:
        raise ValueError(f"designed_distance={designed_distance} must be in [2, {n}]")
    exp = [0] * (2 * n)
    v = 1
    for i in range(2 * n):
        exp[i] = v
        v <<= 1
        if v >> m:
            v ^= _PRIMITIVE[m]
    log = {exp[i]: i for i in range(n)}

    def mul(a, b):
        return 0 if a == 0 or b == 0 else exp[log[a] + log[b]]

    g, done = 1, set()
    for i in range(1, designed_distance):
        if i in done:
            continue
        coset = {i * (1 << j) % n for j in range(m)}
        done |= coset
        poly = [1]  # coefficients in GF(2^m), lowest degree first
        for e in coset:  # multiply by (x + alpha^e)
            root = exp[e]
            poly = [(poly[k - 1] if k else 0) ^ (mul(root, poly[k]) if k < len(poly) else 0)
                    for k in range(len(poly) + 1)]
        if any(c not in (0, 1) for c in poly):
            raise AssertionError("a minimal polynomial must have binary coefficients")
        g = _clmul(g, sum(c << k for k, c in enumerate(poly)))
    return g


def extended_bch_words(m: int, designed_distance: int, weight: int | None = None) -> np.ndarray:
    """Codewords of the extended narrow-sense primitive BCH code of length 2^m, as sorted uint64.

    The cyclic code of length n = 2^m - 1 is {u(x)·g(x)} with g from :func:`bch_generator`
    (bit i of a word = coefficient of x^i); the extension appends an overall parity bit as
    bit n, which makes every weight even and raises the minimum distance by one when it is
    odd. ``weight`` keeps only the words of that weight (the constant-weight words used as
    codewords, rule A). E.g. m=5, designed distance 11 gives [32, 11, 12] (1054 words of
    weight 16), designed distance 5 gives [32, 21, 6] (10540 words of weight 8). As a table
    row (first column = most significant bit) the parity bit is column 0.
    """
    g = bch_generator(m, designed_distance)
    n = (1 << m) - 1
    k = n - (g.bit_length() - 1)
    if k > 24:
        raise ValueError(f"the code has dimension {k}; enumerating 2^{k} words is too many (limit 2^24)")
    u = np.arange(1 << k, dtype=np.uint64)
    c = np.zeros_like(u)
    for i in range(g.bit_length()):
        if (g >> i) & 1:
            c ^= u << np.uint64(i)
    c |= (np.bitwise_count(c) & 1).astype(np.uint64) << np.uint64(n)
    if weight is not None:
        c = c[np.bitwise_count(c) == weight]
    return np.sort(c)


# ----------------------------------------------------------------------------- paper schemes

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

# Table 4 of the appendix, rows in CIFAR-10 class order.
_CIFAR10_TABLES = {
    "5/10": ("1010100011", "0101010101", "1101100010", "0011001101", "1010010101",
             "1001001110", "1011101000", "0100011110", "0110111000", "0100110011"),
    "3/10": ("1001001000", "0110001000", "1010000001", "0000001110", "0001010100",
             "0010100100", "0000110010", "0100010001", "0001100001", "1100000010"),
}

# Stored schemes (coded_lib/schemes/*.txt), built once by build_stored_schemes().
_STORED = {
    ("cifar100", "8/20"): "cifar100_8of20.txt",
    ("cifar100", "4/20"): "cifar100_4of20.txt",
    ("imagenet", "16/32"): "imagenet_16of32.txt",
    ("imagenet", "8/32"): "imagenet_8of32.txt",
}

NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}
PAPER_RATIOS = {"cifar10": ("5/10", "3/10"), "cifar100": ("8/20", "4/20"), "imagenet": ("16/32", "8/32")}


def _parse_ratio(ratio) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(ratio))
    if not m:
        raise ValueError(f"ratio={ratio!r} must be a string 'N_act/N' such as '3/10'")
    return int(m.group(1)), int(m.group(2))


def paper_scheme(dataset: str, ratio: str) -> CodingScheme:
    """The paper's coding scheme of ``dataset`` for ``ratio`` ('N_act/N').

    cifar10: the exact tables of the appendix (Table 4), class order airplane … truck.
    cifar100 (8/20, 4/20) and imagenet (16/32, 8/32): schemes stored in
    ``coded_lib/schemes/`` with the paper's (K, N, N_act) and at least its H_min and balance
    (the paper does not print them); see :func:`build_stored_schemes` for how they were made.
    """
    if dataset not in PAPER_RATIOS:
        raise ValueError(f"dataset={dataset!r}; allowed: {sorted(PAPER_RATIOS)}")
    n_act, n = _parse_ratio(ratio)
    if n_act == n:
        raise ValueError(f"ratio={ratio!r} is r = 1: such blocks are plain ResNeXt blocks and need no coding scheme")
    key = f"{n_act}/{n}"
    if key not in PAPER_RATIOS[dataset]:
        raise ValueError(f"the paper has no {dataset} scheme for ratio {ratio!r}; allowed: {PAPER_RATIOS[dataset]}")
    return _paper_scheme(dataset, key)


@functools.lru_cache(maxsize=None)
def _paper_scheme(dataset: str, key: str) -> CodingScheme:
    if dataset == "cifar10":
        return CodingScheme.from_strings(_CIFAR10_TABLES[key])
    path = importlib.resources.files("coded_lib") / "schemes" / _STORED[(dataset, key)]
    return CodingScheme.from_strings(path.read_text().splitlines())


def _johnson_bound(n: int, d: int, w: int) -> int:
    """Upper bound on the number of words of length n, weight w, pairwise distance >= d."""
    w = min(w, n - w)
    if d > 2 * w:
        return 1
    if w == 0:
        return 1
    return n * _johnson_bound(n - 1, d, w - 1) // w


@functools.lru_cache(maxsize=256)
def scheme_for(K: int, N: int, n_act: int, dataset: str | None = None) -> CodingScheme:
    """The coding scheme a coded block with K classes and ratio n_act/N uses.

    The paper's scheme when it has one of that shape: for ``dataset`` if given, and with
    ``dataset=None`` whichever paper scheme has this (K, N, n_act) (so K = N = 10 with
    n_act 5 or 3 gets the CIFAR-10 tables). Otherwise :func:`generate` with the largest
    h_min (searched downward from the Johnson bound) whose scheme is balanced like the paper's:
    S_max - S_min <= 2 and no subNN without a class (when K·n_act >= N allows it). The paper
    makes the same trade for ImageNet 8/32: Algorithm 1 finds 1068 codewords at distance 8, but
    their column sums cannot be balanced, and the paper uses H_min = 6 with 249/251.
    Results are cached; for N <= 20 a call takes well under a second.
    """
    _check_shape(K, N, n_act)
    ratio = f"{n_act}/{N}"
    if dataset is not None:
        if dataset not in NUM_CLASSES:
            raise ValueError(f"dataset={dataset!r}; allowed: {sorted(NUM_CLASSES)} or None")
        if ratio in PAPER_RATIOS[dataset]:
            if K != NUM_CLASSES[dataset]:
                raise ValueError(f"K={K} but {dataset} has {NUM_CLASSES[dataset]} classes")
            return paper_scheme(dataset, ratio)
    else:
        for name, ratios in PAPER_RATIOS.items():
            if K == NUM_CLASSES[name] and ratio in ratios:
                return paper_scheme(name, ratio)
    top = 2 * min(n_act, N - n_act)  # distances between equal-weight words are even
    for h in range(top, 0, -2):
        if _johnson_bound(N, h, n_act) < K:
            continue
        try:
            scheme = generate(K, N, n_act, h)
        except ValueError:
            continue
        sums = scheme.column_sums()
        # rule C can cost rule B: an idle or overloaded subNN wastes capacity (cf. the paper's 8/32)
        if (sums.max() - sums.min() <= 2 and (sums.min() > 0 or K * n_act < N)) or h == 2:
            return scheme
    raise AssertionError("h_min = 2 keeps all C(N, n_act) >= K words, so it always works")


# ----------------------------------------------------------------------------- stored schemes


def imagenet_16of32() -> CodingScheme:
    """16/32 for ImageNet: 1000 weight-16 words of the extended BCH [32, 11, 12] code.

    The code has 1054 words of weight 16, pairwise at distance >= 12, every column summing
    to 527. It contains the all-ones word, so the complement of a weight-16 word is another
    one; dropping 27 complementary pairs (the 27 with the smallest words) removes 27 from
    every column: columns of exactly 500 and H_min = 12 (the paper: 10, with 499/501).
    """
    words = extended_bch_words(5, 11, weight=16)
    full = np.uint64((1 << 32) - 1)
    small = words[words < (full ^ words)]  # one word of each complementary pair
    drop = set(small[:27].tolist()) | {int(full ^ w) for w in small[:27]}
    keep = np.array([w for w in words.tolist() if w not in drop], dtype=np.uint64)
    return CodingScheme(_from_ints(keep, 32))


def imagenet_8of32(seed: int = 0) -> CodingScheme:
    """8/32 for ImageNet: 1000 of the 10540 weight-8 words of the extended BCH [32, 21, 6] code,
    pairwise at distance >= 6, chosen by :func:`select_balanced` for equal column sums (250)."""
    words = extended_bch_words(5, 5, weight=8)
    idx = select_balanced(words, 32, 1000, 6, seed=seed)
    return CodingScheme(_from_ints(words[idx], 32))


def build_stored_schemes(directory=None) -> dict:
    """(Re)build the stored schemes of :func:`paper_scheme`; returns {file name: scheme}.

    cifar100 8/20 and 4/20: ``generate(100, 20, 8, 8)`` and ``generate(100, 20, 4, 4)``, the
    paper's arguments of Algorithm 1. imagenet: the extended BCH constructions
    :func:`imagenet_16of32` and :func:`imagenet_8of32`. With ``directory`` the files are written.
    """
    schemes = {
        "cifar100_8of20.txt": generate(100, 20, 8, 8),
        "cifar100_4of20.txt": generate(100, 20, 4, 4),
        "imagenet_16of32.txt": imagenet_16of32(),
        "imagenet_8of32.txt": imagenet_8of32(),
    }
    if directory is not None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for name, scheme in schemes.items():
            scheme.save(Path(directory) / name)
    return schemes
