"""The paper's claims as code: per claim id one function from what a chapter measured to its dashboard
rows (value, verdict, note with t and degrees of freedom, seeds); the chapters record the rows they
return, and ``tests/test_claims.py`` works each rule's states out by hand.

Every rule is one-sided, in the direction the paper claims, at 97.5 % in each direction (``judge``): an
effect beyond Student's critical value for its degrees of freedom (Welch–Satterthwaite for two sets of
seeds) holds, beyond it the other way does not hold, and is inconclusive in between or with fewer than
``paper.MIN_SEEDS`` seeds a side. NaN or empty inputs are an error, never a verdict. With 3 seeds a side
and equal spreads (df = 4) the critical value is t = 2.776, where a flat "2 SE" would call t = 2.1 a result.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import pandas as pd

from ..analysis.removal import removal_gaps
from ..analysis.scale import holds_from, summary
from ..analysis.stats import Effect, critical_value, one_sample, paired, welch
from . import paper

# the thresholds of F-binary's rule (paper.RULES): "high" precision and recall
BINARY_LEVEL = 0.8


@dataclass(frozen=True)
class Row:
    """One dashboard row: ``Folder.record(**row.fields())``. ``accuracy``: the test accuracy (a fraction) of
    the network behind the verdict, for a comparison the lowest of the compared settings' means (None: a
    ``Run`` records its own)."""
    id: str
    quantity: str
    ours: str
    verdict: str | None = None
    note: str = ""
    seeds: int | None = None
    accuracy: float | None = None

    def fields(self) -> dict:
        return asdict(self)


def judge(effect: Effect, min_seeds: int = paper.MIN_SEEDS) -> str:
    """The verdict on an effect in the paper's direction: beyond +critical holds, beyond −critical does
    not hold, else (the critical value itself included) inconclusive; an effect over seeds with fewer than
    ``min_seeds`` a side is inconclusive whatever its size."""
    if not math.isfinite(effect.value) or math.isnan(effect.se) or effect.se < 0:
        raise ValueError(f"cannot judge an effect of {effect.value} ± {effect.se}: needs a finite value and SE")
    if (effect.what == "seeds" and effect.n < min_seeds) or math.isinf(effect.se):
        return paper.INCONCLUSIVE
    t, c = effect.t, effect.critical
    if t > c:
        return paper.HOLDS
    if t < -c:
        return paper.FAILS
    return paper.INCONCLUSIVE


def at_this_scale(row: Row, reference: float | None) -> Row:
    """The row once its network's accuracy is weighed: a judged verdict (holds, does not hold, inconclusive)
    from a network whose test accuracy is below ``reference``, a linear classifier's on the same images
    (``analysis.reference``), reads "inconclusive at this scale" either way, its note saying what it would
    read; a row true by construction carries no accuracy; with no accuracy or reference, unchanged."""
    if evidence(row.id, row.quantity, row.seeds) == CONSTRUCTION:
        return replace(row, accuracy=None)
    if row.verdict not in (paper.HOLDS, paper.FAILS, paper.INCONCLUSIVE) or None in (row.accuracy, reference) \
            or row.accuracy >= reference:
        return row
    why = (f"the network's {100 * row.accuracy:.1f} % is below a linear classifier's {100 * reference:.1f} % on the "
           f"same images (on these numbers alone: {row.verdict})")
    return replace(row, verdict=paper.AT_SCALE, note=f"{row.note}; {why}" if row.note else why)


def _mean(values) -> float:
    return sum(values) / len(values)


def _finite_list(values, name: str) -> list:
    v = [float(x) for x in values]
    if not v or not all(map(math.isfinite, v)):
        raise ValueError(f"{name} must be finite numbers, got {v}")
    return v


def _acc_se(p: float, n: int) -> float:
    """SE of an accuracy p (a fraction) on n images."""
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


def _compare(a, b) -> Effect:
    """Welch's a − b; with a side of one seed, the difference of the means with no SE (inconclusive)."""
    a, b = _finite_list(a, "the first side"), _finite_list(b, "the second side")
    if min(len(a), len(b)) >= 2:
        return welch(a, b)
    return Effect(_mean(a) - _mean(b), math.inf, math.inf, min(len(a), len(b)))


def _judge_parts(*effects: Effect) -> str:
    return paper.combine(*(judge(e) for e in effects))


def _t(e: Effect, scale: float = 100.0, unit: str = " points") -> str:
    return e.describe(scale, 2 if scale == 100 else 3, unit) if math.isfinite(e.se) else \
        f"{e.value * scale:+.2f}{unit} (one seed: no SE)"


def _by(frame: pd.DataFrame, key: str, column: str) -> dict:
    """value of ``key`` -> the list of ``column`` over the seeds (finite values only checked later)."""
    if frame.empty:
        raise ValueError(f"no rows to judge (expected columns {key!r} and {column!r})")
    missing = {key, column} - set(frame.columns)
    if missing:
        raise ValueError(f"the table lacks columns {sorted(missing)}; it has {list(frame.columns)}")
    return {k: d[column].astype(float).tolist() for k, d in frame.groupby(key, sort=False)}


def _lowest(groups: dict, *keys) -> float:
    """The lowest mean accuracy among the settings ``keys`` (all when none): ``Row.accuracy`` of a comparison."""
    return min(_mean(groups[k]) for k in keys or groups)


def _seeds(groups: dict) -> int:
    return min(len(v) for v in groups.values())


def _against(groups: dict, ref) -> dict:
    """Each setting other than ``ref`` -> Welch's ref − it ({} without ``ref`` or another setting)."""
    return {k: _compare(groups[ref], v) for k, v in groups.items() if k != ref} if ref in groups else {}


def t_acc(coded, plain) -> list[Row]:
    """T-acc, the paper's headline: coded − plain top-1 (points, per-seed final accuracies in %), Welch
    over the seeds. Rule: holds beyond +t_crit(df), does not hold beyond −t_crit(df)."""
    coded, plain = [float(v) for v in coded], [float(v) for v in plain]
    gap, n = _compare(coded, plain), min(len(coded), len(plain))
    means = f"{_mean(coded):.2f} vs {_mean(plain):.2f} (means of {len(coded)} and {len(plain)} seeds)"
    se, low = f" ± {gap.se:.2f}" if math.isfinite(gap.se) else "", min(_mean(coded), _mean(plain)) / 100
    return [Row("T-acc", paper.ACC, means, seeds=n, accuracy=low),
            Row("T-acc", paper.GAIN, f"{gap.value:+.2f}{se} (SE, {n} seeds each)", judge(gap),
                f"coded − plain {_t(gap, 1.0)}, Welch" + (f"; fewer than {paper.MIN_SEEDS} seeds"
                                                          if n < paper.MIN_SEEDS else ""), n, low)]


# --- the ablations -------------------------------------------------------------------------------

def f_mu(frame: pd.DataFrame) -> Row:
    """F-mu. ``frame``: one row per (mu, seed) with ``val_acc`` and ``early mean`` (fractions). Rule: the
    inner μ of highest mean accuracy above both ends of the grid, and the mean early decoder at the largest
    μ above the smallest μ > 0, each by Welch."""
    acc, early = _by(frame, "mu", "val_acc"), _by(frame, "mu", "early mean")
    values, n = sorted(acc), _seeds(acc)
    ours = "; ".join(f"μ = {v:g}: {100 * _mean(acc[v]):.1f} (early mean {100 * _mean(early[v]):.1f})" for v in values)
    inner = values[1:-1]
    positive = [v for v in values if v > 0]
    if not inner or len(positive) < 2:
        return Row("F-mu", "accuracy and early-decoder accuracy vs μ", ours, paper.INCONCLUSIVE,
                   "needs an inner μ and two μ > 0 to show a rise, a fall and the early decoders", n, _lowest(acc))
    peak = max(inner, key=lambda v: _mean(acc[v]))
    up, down = _compare(acc[peak], acc[values[0]]), _compare(acc[peak], acc[values[-1]])
    keeps = _compare(early[positive[-1]], early[positive[0]])
    note = (f"peak at μ = {peak:g}: − μ = {values[0]:g} {_t(up)}; − μ = {values[-1]:g} {_t(down)}; early decoders "
            f"μ = {positive[-1]:g} − μ = {positive[0]:g} {_t(keeps)}")
    return Row("F-mu", "accuracy and early-decoder accuracy vs μ", ours, _judge_parts(up, down, keeps), note, n,
               _lowest(acc))


def f_pdrop(frame: pd.DataFrame) -> Row:
    """F-pdrop. ``frame``: one row per (p_drop, seed) with ``val_acc`` and ``binary F1``. Rule: 0.1 − 0 in
    accuracy and in binary F1, and 0.1 − 0.2 in accuracy, each by Welch; all three must hold."""
    acc, f1 = _by(frame, "p_drop", "val_acc"), _by(frame, "p_drop", "binary F1")
    n = _seeds(acc)
    ours = "; ".join(f"p_drop = {p:g}: accuracy {100 * _mean(acc[p]):.1f}, binary F1 {_mean(f1[p]):.3f}" for p in acc)
    if not {0.0, 0.1, 0.2} <= set(acc):
        return Row("F-pdrop", "accuracy and binary-classifier quality vs p_drop", ours, paper.INCONCLUSIVE,
                   "needs p_drop 0, 0.1 and 0.2", n, _lowest(acc))
    a0, f0, a2 = _compare(acc[0.1], acc[0.0]), _compare(f1[0.1], f1[0.0]), _compare(acc[0.1], acc[0.2])
    note = f"0.1 − 0: accuracy {_t(a0)}, F1 {_t(f0, 1.0, '')}; 0.1 − 0.2: accuracy {_t(a2)}"
    return Row("F-pdrop", "accuracy and binary-classifier quality vs p_drop", ours, _judge_parts(a0, f0, a2), note, n,
               _lowest(acc))


def t_exp(frame: pd.DataFrame) -> Row:
    """T-exp. ``frame``: one row per (loss_exponent, seed) with ``val_acc``. Rule: exponent 4 − 2 and
    4 − abs in accuracy, each by Welch (the paper: +1.3 and +7.3 points on CIFAR-10)."""
    acc = _by(frame.assign(loss_exponent=frame.loss_exponent.astype(str)), "loss_exponent", "val_acc")
    n = _seeds(acc)
    paper_acc = paper.rows("T-exp")[0]["value"]
    ours = "; ".join(f"{e}: {100 * _mean(a):.1f}" for e, a in acc.items())
    effects = _against(acc, "4")
    note = "; ".join(f"4 − {e}: {_t(d)} (the paper: {paper_acc['4'] - paper_acc[e]:+.1f})" for e, d in effects.items())
    return Row("T-exp", "top-1 accuracy (%) by coding-loss exponent", ours,
               _judge_parts(*effects.values()) if effects else paper.INCONCLUSIVE, note or "needs exponent 4 and another", n,
               _lowest(acc))


REF, CONCAT, DETACH, NO_SKIP = ("sum, coding loss (ours)", "concat, coding loss", "sum, detach, with skips",
                                "sum, detach, without skips")


def t_concat(frame: pd.DataFrame) -> Row:
    """T-concat. ``frame``: one row per (variant, seed) with ``accuracy`` and ``binary F1``. Rule: binary F1
    summed − concatenated, by Welch (the paper: concatenation "does not work")."""
    f1, acc = _by(frame, "variant", "binary F1"), _by(frame, "variant", "accuracy")
    d = _compare(f1[REF], f1[CONCAT])
    return Row("T-concat", "binary classifiers with concatenated instead of summed subNN outputs",
               f"mean binary F1 {_mean(f1[CONCAT]):.3f} vs {_mean(f1[REF]):.3f} summed; "
               f"accuracy {100 * _mean(acc[CONCAT]):.1f} vs {100 * _mean(acc[REF]):.1f}",
               judge(d), f"binary F1 summed − concatenated {_t(d, 1.0, '')}", min(len(f1[REF]), len(f1[CONCAT])),
               _lowest(acc, REF, CONCAT))


def t_detach(frame: pd.DataFrame) -> Row:
    """T-detach. ``frame`` as for :func:`t_concat`. Rule: accuracy without skips − with skips, both with
    detached gradients instead of the coding loss, by Welch (the paper: with skips "significantly lower")."""
    f1, acc = _by(frame, "variant", "binary F1"), _by(frame, "variant", "accuracy")
    d = _compare(acc[NO_SKIP], acc[DETACH])
    m = {k: (100 * _mean(acc[k]), _mean(f1[k])) for k in (DETACH, NO_SKIP, REF)}
    return Row("T-detach", "accuracy with detached gradients instead of the coding loss, with vs without skips",
               f"with skips {m[DETACH][0]:.1f} % (binary F1 {m[DETACH][1]:.3f}); without {m[NO_SKIP][0]:.1f} % "
               f"(binary F1 {m[NO_SKIP][1]:.3f}); coding loss {m[REF][0]:.1f} % (binary F1 {m[REF][1]:.3f})",
               judge(d), f"accuracy without − with skips {_t(d)}", min(len(acc[NO_SKIP]), len(acc[DETACH])),
               _lowest(acc, NO_SKIP, DETACH))


OWN_RATIOS = "the model's own"


def t_ratios(frame: pd.DataFrame) -> Row:
    """T-ratios. ``frame``: one row per (ratios, seed) with ``val_acc``; ``ratios`` names the setting
    (``OWN_RATIOS`` for the model's). Rule: the model's own − each other setting, by Welch; all must hold."""
    acc = _by(frame, "ratios", "val_acc")
    ours = "; ".join(f"{r}: {100 * _mean(a):.1f}" for r, a in acc.items())
    effects = _against(acc, OWN_RATIOS)
    note = "; ".join(f"own − {r}: {_t(d)}" for r, d in effects.items())
    return Row("T-ratios", "top-1 accuracy (%) with other stage ratios", ours,
               _judge_parts(*effects.values()) if effects else paper.INCONCLUSIVE,
               note or "needs the model's own ratios and another setting", _seeds(acc), _lowest(acc))


def f_removal(pairs: dict, block: int) -> Row:
    """F-removal on the paper's block, paired over the same images (``analysis.removal_pairs``): intact −
    k_max active removed and 1 − k_max active removed must each hold (paired t over images, df ∞ for
    many images); removing inactive subNNs must never lower accuracy beyond the critical value (any k)."""
    intact = pairs["intact"].astype(float)
    removed = sorted(key for key in pairs if key != "intact")  # (kind, k), k ascending
    a = {k: pairs[kind, k].astype(float) for kind, k in removed if kind == "active"}
    i = {k: pairs[kind, k].astype(float) for kind, k in removed if kind == "inactive"}
    if not a:
        raise ValueError("no active removals to judge: pairs needs ('active', k) entries")
    k_min, k_max = min(a), max(a)
    drop, deeper = paired(intact, a[k_max]), paired(a[k_min], a[k_max])
    worse = {k: paired(intact, v) for k, v in i.items()}  # positive: inactive removal lowered accuracy
    worst = max(worse, key=lambda k: worse[k].t) if worse else None
    inactive_verdict = paper.FAILS if worst is not None and judge(worse[worst]) == paper.HOLDS else paper.HOLDS
    verdict = paper.combine(judge(drop), judge(deeper) if k_max > k_min else paper.HOLDS, inactive_verdict)
    n = len(intact)
    ours = (f"block {block + 1}, intact {100 * intact.mean():.1f} %; active removed: "
            + " → ".join(f"{100 * v.mean():.1f}" for v in a.values()) + "; inactive removed: "
            + " → ".join(f"{100 * v.mean():.1f}" for v in i.values()) + f" ({n} images, paired)")
    note = (f"intact − {k_max} active removed {_t(drop)}; 1 − {k_max} active {_t(deeper)}"
            + (f"; worst inactive removal (k = {worst}): intact − it {_t(worse[worst])}" if worst else ""))
    return Row("F-removal", "accuracy vs k removed subNNs, active vs inactive", ours, verdict, note)


def t_calib(split: str, ece_change, mce_change, boot_ece, boot_mce, ece_mce_t, ece_mce_aug, n_images: int) -> Row:
    """T-calib for one split ratio, in points. ``*_change``: h_aug − h_T per random split; ``boot_*``: their
    mean over the splits per bootstrap replicate of the images (``calibration.bootstrap_changes``). Value: the
    mean over the splits; SE: its SD over the replicates (normal critical value). Rule: MCE lower beyond it and
    ECE not higher beyond it: holds; ECE or MCE higher beyond it: does not hold; else inconclusive."""
    ece, mce = _finite_list(ece_change, "ECE changes"), _finite_list(mce_change, "MCE changes")
    b_ece, b_mce = _finite_list(boot_ece, "bootstrap ECE changes"), _finite_list(boot_mce, "bootstrap MCE changes")
    if len(ece) < 2 or len(mce) != len(ece) or len(b_ece) < 2 or len(b_mce) != len(b_ece):
        raise ValueError(f"T-calib needs as many (>= 2) ECE as MCE changes, got {len(ece)} and {len(mce)} per "
                         f"split, {len(b_ece)} and {len(b_mce)} per bootstrap replicate")
    sd = lambda v: float(pd.Series(v).std(ddof=1))  # noqa: E731
    de, dm = (Effect(_mean(v), sd(b), math.inf, n_images, "images") for v, b in ((ece, b_ece), (mce, b_mce)))
    verdict = paper.combine(judge(-dm), paper.FAILS if judge(de) == paper.HOLDS else paper.HOLDS)
    (e_t, m_t), (e_a, m_a) = ece_mce_t, ece_mce_aug
    return Row("T-calib", paper.CALIB.format(split), f"({e_t:.2f}, {m_t:.2f}) vs ({e_a:.2f}, {m_a:.2f})", verdict,
               f"h_aug − h_T: MCE {dm.value:+.2f} ± {dm.se:.2f}, ECE {de.value:+.2f} ± {de.se:.2f} points (mean over "
               f"{len(ece)} random splits ± SE, bootstrap over the {n_images} images ({len(b_ece)} replicates), "
               f"calibrators fixed; MCE t = {-dm.t:.2f}; SD over the splits: MCE {sd(mce):.2f}, ECE {sd(ece):.2f})")


# --- B-conditional (non-inferiority) ------------------------------------------------------------
MARGIN = 1.0  # points of accuracy that conditional computation may cost and still count as "not worse"


def b_conditional(full_acc: float, gated_acc: float, n: int, fraction: float, gated: float,
                  margin: float = MARGIN) -> Row:
    """B-conditional as non-inferiority: the accuracy lost by gating (points, on the same n images) must be
    below ``margin`` with 97.5 % confidence (the upper end of its 95 % interval under the margin) and the
    multiply-adds must fall (an exact count): holds; the loss beyond the margin with that confidence, or no
    saving: does not hold; else inconclusive. The SE is that of two accuracies on n images (a bound: the
    two share their images, which only narrows it)."""
    _finite_list((full_acc, gated_acc, fraction), "full_acc, gated_acc and fraction")
    if n < 2:
        raise ValueError(f"n = {n} images: needs at least 2")
    drop = 100 * (full_acc - gated_acc)
    se = 100 * math.sqrt(2) * _acc_se(full_acc, n)
    z = critical_value(math.inf)
    low, high = drop - z * se, drop + z * se
    if fraction >= 1 or low > margin:
        verdict = paper.FAILS
    elif high < margin:
        verdict = paper.HOLDS
    else:
        verdict = paper.INCONCLUSIVE
    return Row("B-conditional", "accuracy (%) and multiply-adds with the later coded blocks gated by an early decoder",
               f"{100 * gated_acc:.2f} vs {100 * full_acc:.2f} (full) at {100 * fraction:.1f} % of the multiply-adds, "
               f"{100 * gated:.0f} % of the images gated", verdict,
               f"accuracy lost {drop:+.2f} points, 95 % interval [{low:+.2f}, {high:+.2f}] on {n} images; margin "
               f"{margin:g} point: holds when the interval's top is below it and the multiply-adds fall")


# --- one trained network: uncertainty over images, classes or subNNs ----------------------------
# These effects are measured on one training: their SE is over the test images (df ∞, the normal's
# 1.96) or over the classes / subNNs (df = their number − 1). They say nothing about another seed.

def _images(value: float, se: float, n: int) -> Effect:
    return Effect(value, se, math.inf, n, "images")


def f_removal_gap(curves: pd.DataFrame, n: int) -> Row | None:
    """F-removal's second part: the active-vs-inactive gap (inactive − active removed, mean over k;
    ``analysis.removal_gaps`` of the removal curves) grows from the first to the last tested block. SE: two
    gaps, each a difference of accuracies on ``n`` images (2 × the intact accuracy's SE). None with one block."""
    gaps = removal_gaps(curves)
    if len(gaps) < 2:
        return None
    first, last = min(gaps), max(gaps)
    intact = curves[(curves.block == last) & (curves.kind == "active") & (curves.k == 0)].accuracy.iloc[0]
    e = _images(gaps[last] - gaps[first], 2 * _acc_se(intact, n), n)
    return Row("F-removal", "active-vs-inactive gap in earlier blocks",
               "gap (points) by block: " + ", ".join(f"{b + 1}: {100 * g:.1f}" for b, g in gaps.items()),
               judge(e), f"last − first block {_t(e)}")


def f_act(p99: pd.DataFrame, block: int, n_images: int) -> Row:
    """F-act (Fig. 4): a subNN's |output| is heavier-tailed on its active samples. ``p99``: index subNN
    (0-based), columns True / False (active / inactive samples), the 99th percentile of |output|. Rule:
    active − inactive, mean over the subNNs, one-sample t over them (df = subNNs − 1)."""
    d = one_sample(p99[True] - p99[False], "subNNs")
    return Row("F-act", "|output| distribution of the first 5 subNNs, active vs inactive samples",
               f"block {block + 1}; 99th percentile active vs inactive: "
               + ", ".join(f"subNN {k + 1}: {p99.loc[k, True]:.2f} vs {p99.loc[k, False]:.2f}" for k in p99.index),
               judge(d), f"active − inactive {d.describe()}, {n_images} images; heavier on active samples for "
                         f"{int((p99[True] > p99[False]).sum())} of {len(p99)}")


def f_early(accuracies, final: float, n: int) -> Row:
    """F-early (Fig. 6): the early decoders' accuracy (fractions, one per coded block in order) rises
    with depth. Rule: last − first beyond the critical value holds; a block below the one before it
    beyond the critical value does not hold. SE of a step: two accuracies on ``n`` images."""
    acc = _finite_list(accuracies, "early-decoder accuracies")
    if len(acc) < 2:
        raise ValueError(f"F-early needs at least 2 early decoders, got {len(acc)}")
    se = math.sqrt(2) * _acc_se(acc[-1], n)
    rise = _images(acc[-1] - acc[0], se, n)
    worst = min((_images(b - a, se, n) for a, b in zip(acc, acc[1:])), key=lambda e: e.value)  # the largest fall
    verdict = paper.FAILS if judge(worst) == paper.FAILS else judge(rise)
    return Row("F-early", paper.EARLY, ", ".join(f"{100 * a:.1f}" for a in acc) + f" (final {100 * final:.1f}; {n} images)",
               verdict, f"last − first {_t(rise)}; {'largest fall' if worst.value < 0 else 'smallest rise'} from one block "
                        f"to the next {_t(worst)}")


def t_agree(agree: pd.DataFrame, min_count: int = 10) -> Row:
    """T-agree: the more early decoders agree with the final prediction, the more often it is right.
    ``agree``: n_agree, accuracy (fraction), count. Rule: accuracy where the most agree − where the
    fewest agree, among groups of at least ``min_count`` images (SE of two binomial accuracies)."""
    ours = "; ".join(f"{a} agree: {100 * acc:.1f} (n = {c})"
                     for a, acc, c in zip(agree.n_agree, agree.accuracy, agree["count"]) if c > 0)
    enough = agree[agree["count"] >= min_count].sort_values("n_agree")
    quantity = "accuracy of the final prediction by number of agreeing early decoders (%)"
    if len(enough) < 2:
        return Row("T-agree", quantity, ours, paper.INCONCLUSIVE, f"fewer than two groups of {min_count} images")
    lo, hi = enough.iloc[0], enough.iloc[-1]
    se = math.hypot(_acc_se(lo.accuracy, lo["count"]), _acc_se(hi.accuracy, hi["count"]))
    e = _images(hi.accuracy - lo.accuracy, se, int(lo["count"] + hi["count"]))
    return Row("T-agree", quantity, ours, judge(e), f"{int(hi.n_agree)} vs {int(lo.n_agree)} agreeing {_t(e)}")


def f_binary(table: pd.DataFrame, n_images: int) -> Row:
    """F-binary (Fig. 5): the K binary classifiers have high precision and recall. ``table``: one row per
    class with ``precision_id``, ``recall``, ``name`` and ``precision vs <OOD set>`` columns. Rule: mean ID
    precision − 0.8 and mean recall − 0.8, one-sample t over the classes; both must hold."""
    p, r = one_sample(table.precision_id, "classes"), one_sample(table.recall, "classes")
    ood = [c for c in table.columns if c.startswith("precision vs ")]
    worst = min(((table.loc[i, c], table.loc[i, "name"], c[len("precision vs "):]) for i in table.index for c in ood),
                default=None)
    return Row("F-binary", "precision-recall of the K binary classifiers, ID vs OOD negatives",
               f"ID: precision {p.value:.2f}, recall {r.value:.2f} (means over {len(table)} classes); "
               + "; ".join(f"{c[len('precision '):]}: precision {table[c].mean():.2f}" for c in ood)
               + (f"; worst: {worst[1]} vs {worst[2]} (precision {worst[0]:.2f})" if worst else ""),
               _judge_parts(p.shifted(BINARY_LEVEL), r.shifted(BINARY_LEVEL)),
               f"precision − {BINARY_LEVEL} {_t(p.shifted(BINARY_LEVEL), 1.0, '')}; recall − {BINARY_LEVEL} "
               f"{_t(r.shifted(BINARY_LEVEL), 1.0, '')}; {n_images} test images")


BINARY_SHARE = 40.0  # % of the full model's parameters below which a binary classifier counts as "small"


def f_binary_parameters(network: str | None, paths: float, whole: float, paper_value: float | None = None) -> Row:
    """F-binary's parameter count (by construction): one class's binary classifier (its active subNNs'
    residual paths and what they need) is a small part of the network. Rule: residual paths below
    ``BINARY_SHARE`` % of the whole model: holds, else does not hold (an exact count). ``network``: the
    paper's network the row is about (None: the trained one)."""
    _finite_list((paths, whole), "the paths' and the whole model's percentages")
    note = f"an exact count; below {BINARY_SHARE:g} %: holds"
    if paper_value is not None:
        closer = "whole model" if abs(whole - paper_value) <= abs(paths - paper_value) else "residual paths"
        note += f"; the paper's {paper_value:g} % is closer to the {closer} count"
    return Row("F-binary", "binary classifier parameters (% of the full model)" + (f", {network}" if network else ""),
               f"whole model {whole:.1f}; residual paths {paths:.1f}",
               paper.HOLDS if paths < BINARY_SHARE else paper.FAILS, note)


def f_bindist(auc: pd.Series, auc_ood: dict, names, level: float = 0.95) -> Row:
    """F-bindist (Fig. 5): a class's logit separates its positives from the other classes' images.
    ``auc``: per class the ROC AUC of positives vs ID negatives; ``auc_ood``: OOD set -> mean AUC. Rule:
    mean AUC − ``level``, one-sample t over the classes."""
    a = one_sample(auc, "classes")
    return Row("F-bindist", "logit distribution: ID positives, ID negatives, OOD negatives",
               f"ROC AUC positives vs ID negatives: {a.value:.3f} (lowest {auc.min():.3f}, {names[auc.idxmin()]}); "
               + "; ".join(f"vs {ood}: {v:.3f}" for ood, v in auc_ood.items()),
               judge(a.shifted(level)), f"mean AUC − {level} {_t(a.shifted(level), 1.0, '')}")


# --- by construction -----------------------------------------------------------------------------

STAGE_TOLERANCE = 0.06  # M parameters: the paper prints "≈" to 0.1 M


def t_arch_stages(label: str, ours: dict, paper_stages: dict) -> Row:
    """T-arch's table: parameters per stage (millions) of each network (data set -> stage -> count) beside
    the paper's; a number, no verdict: "matches" within STAGE_TOLERANCE, else the stages that differ."""
    off = [f"{d} {k} {float(v[k]):.3f} vs {paper_stages[k]}" for d, v in ours.items() for k in paper_stages
           if abs(float(v[k]) - paper_stages[k]) > STAGE_TOLERANCE]
    return Row("T-arch", f"parameters per stage (M), {label}",
               "; ".join(f"{d}: " + ", ".join(f"{k} {float(v[k]):.3f}" for k in paper_stages) for d, v in ours.items()),
               note=f"matches (within {STAGE_TOLERANCE} M)" if not off else "differs: " + ", ".join(off))


def t_arch_total(label: str, coded: dict, plain: dict) -> Row:
    """T-arch: Coded ResNeXt has exactly the parameters of its ResNeXt (data set -> total, millions).
    Rule: equal counts for every network: holds, else does not hold."""
    equal = all(coded[k] == plain[k] for k in coded)
    return Row("T-arch", f"total parameters (M), Coded ResNeXt vs ResNeXt, {label}",
               "; ".join(f"{k}: {coded[k]:.3f} vs {plain[k]:.3f}" for k in coded),
               paper.HOLDS if equal else paper.FAILS, "exact counts")


def t_codes(schemes: pd.DataFrame) -> list[Row]:
    """T-codes: every stored scheme satisfies rule A (N_act ones per codeword) and reaches at least the
    paper's minimum Hamming distance with at most its column spread (S_max − S_min). ``schemes``: ratio,
    K, N, rule A, H_min, S_min, S_max and the paper's H_min, S_min, S_max. One row per scheme and the
    verdict row: all of them: holds, else does not hold."""
    rows, fine = [], []
    for r in schemes.to_dict("records"):
        spread, paper_spread = r["S_max"] - r["S_min"], r["paper S_max"] - r["paper S_min"]
        vs = f"H_min {r['H_min']} vs {r['paper H_min']}, spread {spread} vs {paper_spread}"
        if (r["H_min"], spread) == (r["paper H_min"], paper_spread):
            note = "matches"
        elif r["H_min"] >= r["paper H_min"] and spread <= paper_spread:
            note = "better than the paper's: " + vs
        else:
            note = "worse than the paper's: " + vs
        fine.append(bool(r["rule A"]) and not note.startswith("worse"))
        rows.append(Row("T-codes", paper.CODES.format(r["ratio"], r["K"], r["N"]),
                        f"{r['H_min']}; {r['S_min']}–{r['S_max']}", note=note))
    ok = all(fine)
    return rows + [Row("T-codes", "rules A-C hold for every scheme", "yes" if ok else "no", paper.HOLDS if ok else paper.FAILS,
                       "every codeword has N_act ones, and H_min and the balance are at least the paper's" if ok
                       else "some scheme breaks rule A or falls short of the paper's H_min or balance")]


FLOP_OVERHEAD = 0.05  # coding may add this fraction of the FLOPs and still be "negligible"


def t_cost_flops(plain: float, coded: float, formula_extra: float) -> Row:
    """T-cost (FLOPs, by construction): coding adds a negligible count (the paper: 3·N·C·H·W per coded
    block). ``plain``, ``coded``: counted GFLOPs per image. Rule: coded / plain − 1 below FLOP_OVERHEAD."""
    paper_f = paper.value("T-cost", "GFLOPs")
    added = coded / plain - 1
    return Row("T-cost", paper.rows("T-cost")[0]["quantity"],
               f"{plain:.3f} vs {coded:.3f} (paper's formula: {plain:.3f} + {formula_extra:.3f} = {plain + formula_extra:.3f})",
               paper.HOLDS if added < FLOP_OVERHEAD else paper.FAILS,
               f"ResNeXt-50 {100 * (plain / paper_f['resnext'] - 1):+.1f} % from the paper's count; coding adds "
               f"{100 * added:.1f} % (the paper: {100 * (paper_f['coded'] / paper_f['resnext'] - 1):.1f} %); exact counts")


def t_cost_speed(plain: float, coded: float, device: str) -> Row:
    """T-cost (speed): on a TPU, coded trains at ≥ 0.9 × the plain samples/s. Elsewhere "not run here"."""
    paper_t = paper.value("T-cost", "training throughput")
    speed = coded / plain
    verdict = (paper.HOLDS if speed >= 0.9 else paper.FAILS) if device == "xla" else paper.NOT_HERE
    return Row("T-cost", "training throughput (samples/s), ResNeXt vs Coded", f"{plain:.0f} vs {coded:.0f}", verdict,
               f"coded/plain speed {speed:.2f} on {device} (the paper, TPU: {paper_t['coded'] / paper_t['resnext']:.2f})")


# --- beyond the paper: comparisons of trainings ----------------------------------------------------

def b_semantic(per_seed: pd.DataFrame, gap_columns) -> list[Row]:
    """B-semantic: a semantic scheme (similar classes share subNNs) against the agnostic one, trained with
    the same seeds. ``per_seed``: one row per (scheme, seed) with ``accuracy (%)``, ``mean binary F1`` and
    the removal-gap columns. Rule: semantic − agnostic, paired over the seeds (df = seeds − 1), beyond
    ±t_crit; fewer than MIN_SEEDS seeds: inconclusive."""
    wide = per_seed.pivot(index="seed", columns="scheme")
    mean = per_seed.drop(columns="seed").groupby("scheme").mean()
    d = lambda col: paired(wide[(col, "semantic")], wide[(col, "agnostic")], "seeds")  # noqa: E731
    gap = paired(wide[[(c, "semantic") for c in gap_columns]].mean(axis=1),
                 wide[[(c, "agnostic") for c in gap_columns]].mean(axis=1), "seeds")
    acc, f1, n = d("accuracy (%)"), d("mean binary F1"), len(wide)
    low = mean["accuracy (%)"].min() / 100
    return [
        Row("B-semantic", "removal gap of the early coded blocks, semantic vs agnostic scheme (points)",
            "; ".join(f"{c.split(', ')[1].split(' (')[0]}: {mean.loc['semantic', c]:.1f} vs {mean.loc['agnostic', c]:.1f}"
                      for c in gap_columns), judge(gap), f"semantic − agnostic {_t(gap, 1.0)}, paired by seed", n, low),
        Row("B-semantic", "top-1 accuracy (%), semantic vs agnostic scheme",
            f"{mean.loc['semantic', 'accuracy (%)']:.2f} vs {mean.loc['agnostic', 'accuracy (%)']:.2f}", judge(acc),
            f"semantic − agnostic {_t(acc, 1.0)}, paired by seed", n, low),
        Row("B-semantic", "mean binary-classifier F1, semantic vs agnostic scheme",
            f"{mean.loc['semantic', 'mean binary F1']:.3f} vs {mean.loc['agnostic', 'mean binary F1']:.3f}", judge(f1),
            f"semantic − agnostic {_t(f1, 1.0, '')}, paired by seed", n, low)]


def b_anytime(thin, exits, budget: float, ours: str) -> Row:
    """B-anytime: within ``budget`` of the ResNeXt's multiply-adds, IS-ResNeXt's thin sub-networks beat
    Coded ResNeXt's early exits. ``thin``, ``exits``: per seed the best accuracy (points) within the budget.
    Rule: thin − exit by Welch over the seeds; one seed a side: inconclusive; a method without a point
    within the budget (empty): inconclusive."""
    quantity = f"accuracy (%) within {100 * budget:.0f} % of the ResNeXt's multiply-adds, thin sub-networks vs early exits"
    thin, exits = list(thin), list(exits)
    if not thin or not exits:
        return Row("B-anytime", quantity, ours, paper.INCONCLUSIVE, "a method has no point within the budget")
    d = _compare(thin, exits)  # d.n: the seeds of the smaller side
    return Row("B-anytime", quantity, ours, judge(d), f"thin − exit {_t(d, 1.0)}"
               + (f"; {d.n} seed(s): needs {paper.MIN_SEEDS}" if d.n < paper.MIN_SEEDS else ""), d.n)


# claim id -> the function that judges it, for the chapters and the tests
BY_ID = {"T-acc": t_acc, "F-removal": f_removal, "T-calib": t_calib, "B-conditional": b_conditional, "F-mu": f_mu,
         "F-pdrop": f_pdrop, "T-exp": t_exp, "T-concat": t_concat, "T-detach": t_detach, "T-ratios": t_ratios,
         "F-act": f_act, "F-early": f_early, "T-agree": t_agree, "F-binary": f_binary, "F-bindist": f_bindist,
         "T-arch": t_arch_total, "T-codes": t_codes, "T-cost": t_cost_flops, "B-semantic": b_semantic,
         "B-anytime": b_anytime}


# --- scale (the full edition) --------------------------------------------------------------------

def scale_verdicts(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per training-set size, T-acc's verdict (coded − plain, Welch over the seeds) and F-binary's on
    precision and F1 (the seeds' mean above BINARY_LEVEL, one-sample t over the seeds)."""
    table = summary(per_seed)
    table["T-acc"] = [judge(e) for e in table.pop("_gap")]
    table["F-binary precision"] = [judge(e.shifted(BINARY_LEVEL)) for e in table.pop("_precision")]
    table["F-binary F1"] = [judge(one_sample(d.f1).shifted(BINARY_LEVEL))
                            for _, d in per_seed.groupby("train_images", sort=True)]
    return table


def scale_sentence(table: pd.DataFrame) -> str:
    """One sentence per claim: from which training-set size on it holds here, or that it does not up to
    the largest size measured."""
    sizes = table.train_images.tolist()
    parts = []
    for column, what in (("T-acc", "the coded − plain accuracy gain (T-acc)"),
                         ("F-binary precision", f"the binary classifiers' mean precision above {BINARY_LEVEL}"),
                         ("F-binary F1", f"their mean F1 above {BINARY_LEVEL}")):
        start, last = holds_from(sizes, table[column]), table[column].iloc[-1]
        parts.append(f"{what} holds from {start:,} training images on" if start is not None else
                     f"{what} {'does not hold' if last == paper.FAILS else 'is not shown'} up to {max(sizes):,} "
                     f"training images ({last} there)")
    return "Here " + "; ".join(parts) + "."


# --- evidence ------------------------------------------------------------------------------------
# Claims whose verdict is an exact count or a property of the code, true or false whatever the training:
# (id, the start of the paper quantity); None matches every quantity of the id.
BY_CONSTRUCTION = (("T-arch", None), ("T-codes", None), ("T-cost", "GFLOPs"), ("F-binary", "binary classifier parameters"))
CONSTRUCTION, ONE_TRAINING = "by construction", "one training"


def evidence(id: str, quantity: str, seeds) -> str:
    """What a dashboard row's verdict rests on: "by construction" (an exact count or a property of the
    code), "n seeds" (uncertainty over trainings) or "one training" (uncertainty over images or subNNs of
    one trained network)."""
    if any(id == i and (q is None or quantity.startswith(q)) for i, q in BY_CONSTRUCTION):
        return CONSTRUCTION
    n = int(seeds) if str(seeds or "").strip() else 0
    return f"{n} seeds" if n > 1 else ONE_TRAINING
