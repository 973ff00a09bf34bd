"""Confidence calibration with and without the early decoders (appendix C, Table 6).

Two calibrators of the final logits z are compared:

* h_T (Eq. 10): softmax(z / T), one temperature T;
* h_aug (Eq. 11): softmax(z / T_aug) with T_aug = T * (1 + sum_i 1(c_i = y_hat) * tau_i),
  one extra parameter tau_i per early decoder i, which changes the temperature of a
  sample according to which early decoders agree with the final prediction y_hat.

Both are fitted on the negative log-likelihood of a held-out part of the validation set by
plain gradient descent (torch.optim.SGD without momentum), lr 0.1, 600 steps, from T = 1 and
tau = 0, as the appendix says. They are judged by the expected and maximum calibration errors
(ECE, MCE) with M = 15 equal-width bins, averaged over 41 random class-balanced splits.
`bootstrap_changes` resamples the images to give h_aug - h_T's mean over the splits an SE.
"""
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

# T_aug is a product of learnt numbers; a floor keeps the softmax defined if gradient descent
# drives 1 + sum_i tau_i below zero for some pattern of agreeing decoders.
MIN_TEMPERATURE = 1e-2
_MAX_FIT_ELEMENTS = 2 ** 24


def _check_bins(n_bins):
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")


def reliability_table(confidence, correct, n_bins=15):
    """Per-bin accuracy and confidence (Eq. 8-9 of the appendix), as a DataFrame.

    Bins are I_m = ((m-1)/M, m/M], closed on the right as in Guo et al.; a confidence of
    exactly 0 goes to the first bin. Columns: bin, lower, upper, count, accuracy, confidence
    (accuracy and confidence are NaN for empty bins).
    """
    _check_bins(n_bins)
    conf = torch.as_tensor(confidence, dtype=torch.float64).flatten()
    corr = torch.as_tensor(correct).flatten().to(torch.float64)
    if conf.numel() != corr.numel():
        raise ValueError(f"confidence has {conf.numel()} values but correct has {corr.numel()}")
    if conf.numel() == 0:
        raise ValueError("calibration needs at least one sample, got none")
    if not torch.isfinite(conf).all():
        raise ValueError(f"confidence holds {int((~torch.isfinite(conf)).sum())} nan/inf values; allowed: numbers in [0, 1]")
    if conf.min() < 0 or conf.max() > 1:
        raise ValueError(f"confidence must lie in [0, 1], got range [{conf.min():.4g}, {conf.max():.4g}]")
    if not ((corr == 0) | (corr == 1)).all():
        raise ValueError(f"correct must be booleans or 0/1, got values {sorted(set(corr.unique().tolist()))[:5]}")
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    # right=False: index m-1 such that edges[m-1] < c <= edges[m], the right-closed bin I_m
    idx = torch.bucketize(conf, edges[1:-1], right=False)
    count = torch.bincount(idx, minlength=n_bins).to(torch.float64)
    acc = torch.bincount(idx, weights=corr, minlength=n_bins) / count
    mean_conf = torch.bincount(idx, weights=conf, minlength=n_bins) / count
    return pd.DataFrame({
        "bin": np.arange(n_bins), "lower": edges[:-1].numpy(), "upper": edges[1:].numpy(),
        "count": count.long().numpy(), "accuracy": acc.numpy(), "confidence": mean_conf.numpy(),
    })


def calibration_errors(confidence, correct, n_bins=15):
    """Expected and maximum calibration error of top-1 confidences, as fractions (not %).

    ECE = sum_m |B_m|/n * |acc(B_m) - conf(B_m)| and MCE = max_m |acc(B_m) - conf(B_m)| over
    the non-empty bins of `reliability_table` (Guo et al. 2017; appendix C).
    """
    table = reliability_table(confidence, correct, n_bins)
    full = table[table["count"] > 0]
    gap = (full["accuracy"] - full["confidence"]).abs()
    ece = float((gap * full["count"]).sum() / full["count"].sum())
    mce = float(gap.max())
    return ece, mce


def aug_temperature(T, tau, agree):
    """T_aug of Eq. 11 for each sample: T * (1 + sum_i agree_i * tau_i), floored at MIN_TEMPERATURE.

    agree [S, L] (bool or 0/1): agree[s, i] = 1 when early decoder i predicts the final prediction.
    T scalar and tau [L] give [S]; T [P] and tau [P, L] with agree [P, S, L] give [P, S].
    """
    tau = torch.as_tensor(tau)
    T = torch.as_tensor(T, dtype=tau.dtype)
    agree = torch.as_tensor(agree).to(tau.dtype)
    return (T[..., None] * (1 + (agree * tau[..., None, :]).sum(-1))).clamp_min(MIN_TEMPERATURE)


def _fit(logits, targets, agree, steps, lr):
    """Fit P independent calibrators at once by plain gradient descent.

    logits [P, S, K], targets [P, S], agree [P, S, L] or None (h_T). The loss is the sum over p
    of each problem's mean NLL, so each (T_p, tau_p) receives exactly its own gradient: this is
    P separate descents, batched to save Python overhead.
    """
    P, S, _ = logits.shape
    T = torch.ones(P, dtype=logits.dtype, requires_grad=True)
    L = 0 if agree is None else agree.shape[2]
    tau = torch.zeros(P, L, dtype=logits.dtype, requires_grad=True)
    # Plain gradient descent (SGD without momentum), lr 0.1, 600 iterations, as in appendix C.
    opt = torch.optim.SGD([T, tau], lr=lr, momentum=0.0)
    for _ in range(steps):
        opt.zero_grad()
        if agree is None:
            temp = T.clamp_min(MIN_TEMPERATURE)[:, None].expand(P, S)
        else:
            temp = aug_temperature(T, tau, agree)
        nll = F.cross_entropy((logits / temp[..., None]).flatten(0, 1), targets.flatten(), reduction="none")
        nll.view(P, S).mean(1).sum().backward()
        opt.step()
    return T.detach().clamp_min(MIN_TEMPERATURE), tau.detach()


def _check_logits(logits, targets):
    # float32: twice as fast as float64 here, and T needs no more than ~6 digits
    logits = torch.as_tensor(logits).detach().to(torch.float32)
    targets = torch.as_tensor(targets).long()
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"logits must be [S, K] and targets [S], got {tuple(logits.shape)} and {tuple(targets.shape)}")
    if logits.numel() == 0:
        raise ValueError(f"calibration needs at least one sample and one class, got logits {tuple(logits.shape)}")
    if not torch.isfinite(logits).all():
        raise ValueError(f"logits hold {int((~torch.isfinite(logits)).sum())} nan/inf values; allowed: finite numbers")
    if not 0 <= int(targets.min()) <= int(targets.max()) < logits.shape[1]:
        raise ValueError(f"targets range over {int(targets.min())}..{int(targets.max())}; allowed: 0..{logits.shape[1] - 1}")
    return logits, targets


def _check_agree(agree, n):
    agree = torch.as_tensor(agree).to(torch.float32)
    if agree.ndim != 2 or agree.shape[0] != n:
        raise ValueError(f"agree must be [S, L] with S = {n}, got {tuple(agree.shape)}")
    return agree


def fit_temperature(logits, targets, steps=600, lr=0.1):
    """Fit T of h_T (Eq. 10) on NLL by gradient descent from T = 1; returns T as a float."""
    logits, targets = _check_logits(logits, targets)
    T, _ = _fit(logits[None], targets[None], None, steps, lr)
    return float(T[0])


def fit_aug_temperature(logits, targets, agree, steps=600, lr=0.1):
    """Fit (T, tau) of h_aug (Eq. 11) on NLL by gradient descent from T = 1, tau = 0.

    agree: [S, L] bool, whether early decoder i agrees with the final prediction argmax(logits).
    Returns (T float, tau numpy array [L]).
    """
    logits, targets = _check_logits(logits, targets)
    agree = _check_agree(agree, len(logits))
    T, tau = _fit(logits[None], targets[None], agree[None], steps, lr)
    return float(T[0]), tau[0].numpy().copy()


def class_balanced_split(targets, fraction, generator=None):
    """Random split of sample indices into (fit, test), each class split in the same proportion.

    Each class c with n_c samples puts round(fraction * n_c) of them, at random, into the fit part.
    Returns two sorted LongTensors of indices.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    targets = torch.as_tensor(targets).long()
    fit, test = [], []
    for c in torch.unique(targets):
        idx = torch.nonzero(targets == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_fit = int(round(fraction * len(idx)))
        fit.append(idx[:n_fit])
        test.append(idx[n_fit:])
    return torch.cat(fit).sort().values, torch.cat(test).sort().values


def _split_confidences(logits, targets, early_preds, fit_fractions, n_splits, steps, lr, seed):
    """Check the inputs, then return (correct [S], an iterator of (fraction, split, test indices, confs)).

    For each fit fraction and each of ``n_splits`` class-balanced random splits (drawn from one
    torch generator seeded with ``seed``, in that order), h_T and h_aug are fitted on the fit part;
    ``confs`` maps "uncalibrated" | "h_T" | "h_aug" to (top-1 confidences on the test images, T).
    The one source of splits and fitted calibrators for `calibration_splits` and
    `bootstrap_changes`: the same seed gives both the same splits and fits.
    """
    logits, targets = _check_logits(logits, targets)
    early_preds = torch.as_tensor(early_preds).long()
    if early_preds.ndim != 2 or early_preds.shape[0] != logits.shape[0]:
        raise ValueError(f"early_preds must be [S, L] with S = {logits.shape[0]}, got {tuple(early_preds.shape)}")
    preds = logits.argmax(1)
    agree = (early_preds == preds[:, None]).to(torch.float32)
    counts = torch.bincount(targets)
    counts = counts[counts > 0]
    for frac in fit_fractions:
        if not 0 < frac < 1:
            raise ValueError(f"fit fraction {frac!r}; allowed: numbers in (0, 1)")
        n_fit = sum(int(round(frac * int(c))) for c in counts)  # class_balanced_split's rounding
        if not 0 < n_fit < len(targets):
            raise ValueError(f"fit_fraction={frac} of {len(targets)} samples ({counts.min().item()}-{counts.max().item()} "
                             f"per class) leaves {'no sample to fit' if n_fit == 0 else 'no sample to test'}; "
                             "use more samples or another fit fraction")

    def generate():
        gen = torch.Generator().manual_seed(seed)
        for frac in fit_fractions:
            splits = [class_balanced_split(targets, frac, gen) for _ in range(n_splits)]
            # Every split has the same per-class counts, hence the same size: the n_splits fits
            # stack into one batched descent.
            fit = torch.stack([f for f, _ in splits])
            # Chunks bound the memory of the stacked [P, S_fit, K] logits (ImageNet-sized sets).
            chunk = max(1, _MAX_FIT_ELEMENTS // fit[0].numel() // logits.shape[1])
            T, T_a, tau = [], [], []
            for f in fit.split(chunk):
                T.append(_fit(logits[f], targets[f], None, steps, lr)[0])
                t_a, ta = _fit(logits[f], targets[f], agree[f], steps, lr)
                T_a.append(t_a)
                tau.append(ta)
            T, T_a, tau = torch.cat(T), torch.cat(T_a), torch.cat(tau)
            for split, (_, test) in enumerate(splits):
                z = logits[test]
                t_aug = aug_temperature(T_a[split], tau[split], agree[test])
                yield frac, split, test, {
                    "uncalibrated": (z.softmax(1).amax(1), 1.0),
                    "h_T": ((z / T[split]).softmax(1).amax(1), float(T[split])),
                    "h_aug": ((z / t_aug[:, None]).softmax(1).amax(1), float(T_a[split])),
                }
    return preds == targets, generate()


def calibration_splits(logits, targets, early_preds, fit_fractions=(0.25, 0.5), n_splits=41,
                       n_bins=15, steps=600, lr=0.1, seed=0):
    """ECE and MCE of h_T and h_aug on every random split (Table 6 of the appendix).

    logits [S, K] final logits, targets [S], early_preds [S, L] early decoders' predictions.
    For each fit fraction and each of `n_splits` class-balanced random splits, both calibrators
    are fitted on the fit part and evaluated on the rest; the uncalibrated softmax (T = 1) is
    evaluated too. Returns a long DataFrame: fit_fraction, split, method
    ("uncalibrated" | "h_T" | "h_aug"), ece, mce (fractions), T.
    """
    correct, splits = _split_confidences(logits, targets, early_preds, fit_fractions, n_splits, steps, lr, seed)
    rows = []
    for frac, split, test, confs in splits:
        for method, (conf, t) in confs.items():
            ece, mce = calibration_errors(conf, correct[test], n_bins)
            rows.append({"fit_fraction": frac, "split": split, "method": method, "ece": ece, "mce": mce, "T": t})
    return pd.DataFrame(rows)


def _weighted_errors(weights, confidence, correct, n_bins):
    """ECE and MCE [B] of one set of confidences under B weightings of its samples (weights [B, n]).

    With integer weights (bootstrap counts) these are `calibration_errors` of the sample in which
    sample j appears weights[b, j] times: per bin, the weighted count, number correct and sum of
    confidences are one matrix product of the weights with a one-hot [n, M] bin matrix (the bins of
    `reliability_table`). ECE = sum_m |sum w*correct - sum w*conf| / sum w; MCE the largest
    |accuracy - confidence| over the bins of positive weight. NaN where a weighting is all zero.
    """
    conf = torch.as_tensor(confidence, dtype=torch.float64).flatten()
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    idx = torch.bucketize(conf, edges[1:-1], right=False).numpy()  # as in reliability_table
    onehot = np.zeros((len(idx), n_bins))
    onehot[np.arange(len(idx)), idx] = 1.0
    per_bin = np.concatenate([onehot, onehot * np.asarray(correct, float)[:, None], onehot * conf.numpy()[:, None]], 1)
    count, n_correct, sum_conf = np.split(weights @ per_bin, 3, axis=1)  # each [B, M]
    gap = np.abs(n_correct - sum_conf)
    with np.errstate(invalid="ignore", divide="ignore"):
        ece = gap.sum(1) / count.sum(1)
        mce = np.where(count > 0, gap / np.where(count > 0, count, 1.0), -np.inf).max(1)
    return ece, np.where(np.isfinite(mce), mce, np.nan)


def bootstrap_changes(logits, targets, early_preds, fit_fractions=(0.25, 0.5), n_splits=41, n_boot=1000,
                      n_bins=15, steps=600, lr=0.1, seed=0, boot_seed=0, weights=None):
    """A bootstrap over the images of h_aug - h_T's ECE and MCE, averaged over the splits (Table 6).

    The splits and the fitted calibrators h_T (Eq. 10) and h_aug (Eq. 11) are those of
    `calibration_splits` with the same arguments and ``seed``. What is resampled is the set of
    S images: each replicate draws S images with replacement (multinomial counts over all S, from
    a numpy generator seeded with ``boot_seed``), once, and the same counts weight every split's
    test images, so the overlap of the splits' test sets is kept. Per replicate and fit fraction,
    the ECE and MCE of both calibrators are computed on each split's test images weighted by the
    counts, and h_aug - h_T is averaged over the splits. What is held fixed is the calibrators:
    they are not refitted on the resampled images, so the noise of fitting T and tau is not in
    this bootstrap (the spread over the splits shows that). With all counts 1 a replicate is the
    mean over the splits of `calibration_splits`' differences.

    ``weights`` [B, S] (optional): the images' weights per replicate instead of the multinomial
    draws (then B replicates, ``n_boot`` unused); e.g. all ones, or counts drawn elsewhere.
    Returns a DataFrame: fit_fraction, replicate, ece_change, mce_change (fractions, not %);
    the SD of a change over the replicates is the SE of its mean over the splits. (A replicate that
    draws none of a split's test images, possible only with a handful of them, gives NaN.)
    """
    _check_bins(n_bins)
    if not isinstance(n_splits, int) or n_splits < 1:
        raise ValueError(f"n_splits must be a positive int, got {n_splits!r}")
    correct, splits = _split_confidences(logits, targets, early_preds, fit_fractions, n_splits, steps, lr, seed)
    S = len(correct)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 2 or weights.shape[1] != S or not np.all(np.isfinite(weights) & (weights >= 0)):
            raise ValueError(f"weights must be [B, S = {S}] finite and >= 0, got shape {weights.shape}")
        n_boot = len(weights)
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    # the fits (once); per split only what the errors need: test indices, correct, h_T's and h_aug's confidences
    splits = [(test.numpy(), correct[test].numpy(), c["h_T"][0], c["h_aug"][0]) for _, _, test, c in splits]
    rng = np.random.default_rng(boot_seed)
    change = np.zeros((2, len(fit_fractions), n_boot))  # (ECE, MCE), fit fraction, replicate
    chunk = max(1, _MAX_FIT_ELEMENTS // S)  # replicates at a time: bounds the [replicates, S] counts
    for lo in range(0, n_boot, chunk):
        b = min(chunk, n_boot - lo)
        if weights is None:
            counts = rng.multinomial(S, np.full(S, 1.0 / S), size=b).astype(np.float64)
        else:
            counts = weights[lo:lo + b]
        for i, (test, test_correct, conf_t, conf_aug) in enumerate(splits):
            w = counts[:, test]  # the same draw of the images weights every split's test set
            ece_t, mce_t = _weighted_errors(w, conf_t, test_correct, n_bins)
            ece_a, mce_a = _weighted_errors(w, conf_aug, test_correct, n_bins)
            change[:, i // n_splits, lo:lo + len(counts)] += np.stack([ece_a - ece_t, mce_a - mce_t]) / n_splits
    return pd.DataFrame({"fit_fraction": np.repeat(np.asarray(fit_fractions, float), n_boot),
                         "replicate": np.tile(np.arange(n_boot), len(fit_fractions)),
                         "ece_change": change[0].ravel(), "mce_change": change[1].ravel()})


def calibration_experiment(logits, targets, early_preds, fit_fractions=(0.25, 0.5), n_splits=41,
                           n_bins=15, steps=600, lr=0.1, seed=0):
    """Table 6: mean and std over random splits of ECE and MCE in percent, per split and method.

    Same arguments as `calibration_splits`. Columns: fit_fraction, method, ece_pct, ece_pct_std,
    mce_pct, mce_pct_std, n_splits.
    """
    raw = calibration_splits(logits, targets, early_preds, fit_fractions, n_splits, n_bins, steps, lr, seed)
    raw[["ece", "mce"]] *= 100
    g = raw.groupby(["fit_fraction", "method"], sort=False)
    out = g.agg(ece_pct=("ece", "mean"), ece_pct_std=("ece", "std"), mce_pct=("mce", "mean"),
                mce_pct_std=("mce", "std"), n_splits=("split", "count"))
    return out.reset_index()
