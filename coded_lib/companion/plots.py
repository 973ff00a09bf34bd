"""The book's paper-vs-ours figures, in one house style: the paper in grey, ours in blue with its
uncertainty (a 95 % interval: Student's critical value times the SE, for the degrees of freedom of
the estimate), legends outside the plotted data, one quantity per axis.

Each function takes a small table and returns the matplotlib Figure (the chapter saves and shows it).
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt

from ..analysis.stats import critical_value
from . import paper

PAPER, OURS, PLAIN = "tab:gray", "tab:blue", "tab:orange"
WIDTH = 7.6  # inches: the book's text width at 100 dpi (coded_lib.companion.notebook.FIG_WIDTH)


def half_width(se: float, df: float) -> float:
    """Half the 95 % two-sided interval (97.5 % one-sided each way) of an estimate with ``se`` and ``df``."""
    return critical_value(df) * se if math.isfinite(se) else 0.0


def scale_figure(table):
    """Scale dependence (full edition): left, coded − plain accuracy gap against training images with
    its Welch interval; right, the binary classifiers' mean precision and F1 with their intervals over
    the seeds, and the 0.8 line of F-binary's rule. ``table``: ``coded_lib.analysis.scale.summary``."""
    n = table.train_images.to_numpy()
    fig, (gap_ax, bin_ax) = plt.subplots(1, 2, figsize=(WIDTH, 3.6))
    gap_ax.errorbar(n, table["gap (points)"], yerr=[half_width(s, d) for s, d in zip(table["gap SE"], table["gap df"])],
                    marker="o", color=OURS, capsize=4, label="ours, 95 % interval over seeds (Welch)")
    gap_ax.axhline(0, color="k", lw=1)
    c10 = paper.value("T-acc", paper.ACC, "CIFAR-10")
    gain = c10["coded"] - c10["resnext"]
    gap_ax.axhline(gain, color=PAPER, ls="--", label=f"the paper, CIFAR-10 ({gain:+.2f})")
    gap_ax.set(xscale="log", xlabel="training images", ylabel="coded − plain top-1 (points)", title="T-acc")
    seeds = table.seeds.to_numpy()
    for column, marker, color in (("precision", "o", OURS), ("F1", "s", PLAIN)):
        bin_ax.errorbar(n, table[column], yerr=[half_width(s, k - 1) for s, k in zip(table[f"{column} SE"], seeds)],
                        marker=marker, color=color, capsize=4, label=f"mean {column}, 95 % interval over seeds")
    bin_ax.axhline(0.8, color=PAPER, ls="--", label="0.8: F-binary's rule")
    bin_ax.set(xscale="log", xlabel="training images", ylabel="binary classifiers (ID negatives)",
               title="F-binary", ylim=(min(0.5, float(table[["precision", "F1"]].min().min()) - 0.05), 1.0))
    for ax in (gap_ax, bin_ax):
        ax.minorticks_off()  # a log axis labels its minor ticks in scientific notation, over each other
        ax.set_xticks(n, [f"{v / 1000:g}k" if v >= 1000 else str(v) for v in n])
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


def cost_ratios(ratios, counted: str, timed: str):
    """T-cost: Coded / plain ratios, the paper's beside ours, one quantity kind per axis: the exact counts
    (``ratios`` rows "GFLOPs", "parameters"; ours for ``counted``) on the left, the timings ("training
    speed", "peak memory"; ours for ``timed``, another network and device than the paper's TPU) on the
    right. ``ratios``: columns "the paper" and "ours"."""
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.4), sharey=True)
    for ax, rows, title in ((axes[0], ["GFLOPs", "parameters"], f"counted: {counted}"),
                            (axes[1], ["training speed", "peak memory"], f"timed: {timed}")):
        ratios.loc[rows].plot.bar(ax=ax, rot=0, color=[PAPER, OURS], legend=False)
        ax.axhline(1, color="k", lw=1)
        ax.set(title=title, ylabel="Coded / plain")
        ax.title.set_fontsize(10)
    axes[0].set_ylim(0, max(1.3, float(ratios.max().max()) * 1.15))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, ["the paper (ResNeXt-50, TPU)", "ours"], loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
