"""The statistics behind the verdicts: an effect, its standard error and its degrees of freedom.

A verdict that compares trainings rests on few seeds (3 to 5 a side), where the standard error is
itself uncertain: the critical value is Student's t with the Welch–Satterthwaite degrees of freedom,
not a flat 2 SE (at 3 seeds a side about 2.8 SE at the same one-sided 97.5 % level). An effect
measured on many images of one trained network has its SE over images and infinite degrees of
freedom (the normal's 1.96). scipy gives the distributions; nothing here is fitted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

LEVEL = 0.975  # one-sided, in each direction


@dataclass(frozen=True)
class Effect:
    """An effect in the paper's direction (positive = as the paper claims), its SE and degrees of freedom.

    ``df`` is ``math.inf`` for an SE over many images (normal critical value), ``n`` the samples (seeds
    per side, or images) it rests on, ``what`` what the uncertainty is over ("seeds", "images", ...).
    """
    value: float
    se: float
    df: float
    n: int
    what: str = "seeds"

    @property
    def t(self) -> float:
        """The t statistic, value / SE (±inf for an exact effect, SE = 0)."""
        if self.se == 0:
            return math.copysign(math.inf, self.value) if self.value else 0.0
        return self.value / self.se

    @property
    def critical(self) -> float:
        """Student's t quantile at LEVEL for ``df`` (the normal's where df is infinite)."""
        return critical_value(self.df)

    def __neg__(self) -> "Effect":
        return Effect(-self.value, self.se, self.df, self.n, self.what)

    def shifted(self, by: float) -> "Effect":
        """The effect minus ``by`` (e.g. a precision against its threshold, an accuracy drop against a margin)."""
        return Effect(self.value - by, self.se, self.df, self.n, self.what)

    def describe(self, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
        """'+0.52 ± 0.31 (SE over 5 seeds; t = 1.68, df = 7.6)' with the value and SE times ``scale``."""
        df = "∞" if math.isinf(self.df) else f"{self.df:.1f}"
        t = "±∞" if math.isinf(self.t) else f"{self.t:.2f}"
        return (f"{self.value * scale:+.{digits}f}{unit} ± {self.se * scale:.{digits}f} "
                f"(SE over {self.n} {self.what}; t = {t}, df = {df})")


def critical_value(df: float, level: float = LEVEL) -> float:
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    return float(_st.norm.ppf(level)) if math.isinf(df) else float(_st.t.ppf(level, df))


def _values(x, name: str) -> np.ndarray:
    v = np.asarray(list(x), dtype=float)
    if v.size == 0:
        raise ValueError(f"{name} is empty: a verdict needs measured values")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} holds NaN or inf ({v.tolist()}): a verdict needs finite values")
    return v


def welch(a, b, what: str = "seeds") -> Effect:
    """mean(a) − mean(b) for two independent samples (e.g. the final accuracies of the seeds of two
    trainings), with Welch's SE and the Welch–Satterthwaite degrees of freedom. Each side needs at least
    two values; when both have no spread the difference is exact (SE 0, df inf)."""
    a, b = _values(a, "the first sample"), _values(b, "the second sample")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's test needs at least 2 values a side, got {len(a)} and {len(b)}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Effect(float(a.mean() - b.mean()), 0.0, math.inf, min(len(a), len(b)), what)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return Effect(float(a.mean() - b.mean()), se, float(df), min(len(a), len(b)), what)


def one_sample(x, what: str = "seeds") -> Effect:
    """mean(x) with its SE and n − 1 degrees of freedom (x: per-seed, per-class or per-image values)."""
    x = _values(x, "the sample")
    if len(x) < 2:
        raise ValueError(f"a mean's SE needs at least 2 values, got {len(x)}")
    return Effect(float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))), float(len(x) - 1), len(x), what)


def paired(a, b, what: str = "images") -> Effect:
    """mean(a − b) over pairs measured on the same units (the same images with and without a change):
    the paired t, whose SE is that of the per-unit differences."""
    a, b = _values(a, "the first sample"), _values(b, "the second sample")
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    d = a - b
    if np.all(d == d[0]):
        return Effect(float(d[0]), 0.0, math.inf, len(d), what)
    e = one_sample(d, what)
    return Effect(e.value, e.se, math.inf if len(d) > 1000 else e.df, len(d), what)


def bootstrap(statistic, n: int, draws: int = 1000, seed: int = 0, what: str = "images") -> Effect:
    """``statistic(indices)`` on the n units, with its SE from ``draws`` resamples of the units with
    replacement (the bootstrap; df inf: the SE is read as a normal one)."""
    if n < 2:
        raise ValueError(f"a bootstrap needs at least 2 units, got {n}")
    rng = np.random.default_rng(seed)
    value = float(statistic(np.arange(n)))
    boot = np.array([statistic(rng.integers(0, n, n)) for _ in range(draws)], dtype=float)
    if not np.isfinite(value) or not np.all(np.isfinite(boot)):
        raise ValueError("the bootstrapped statistic gave NaN or inf")
    return Effect(value, float(boot.std(ddof=1)), math.inf, n, what)
