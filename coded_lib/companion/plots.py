"""The book's figures, the paper's values beside ours wherever it gives them, in one house style: the paper in grey,
ours in blue with its uncertainty (a 95 % interval: Student's critical value times the SE, for the degrees of freedom
of the estimate), legends outside the plotted data, one quantity per axis. Each function takes a small table and
returns the matplotlib Figure (the chapter saves and shows it)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import collections, lines, patches, transforms
from matplotlib.path import Path

from ..analysis.stats import critical_value, one_sample
from . import paper

PAPER, OURS, PLAIN = "tab:gray", "tab:blue", "tab:orange"
WIDTH = 7.6  # inches: the book's text width at 100 dpi (coded_lib.companion.notebook.FIG_WIDTH)
LEGEND_KEY = "coded-lib-legend"  # the PNG text of a figure a chapter shows: "clear", or legend_overlaps's list


def legend_overlaps(fig) -> list[str]:
    """Where a legend of ``fig`` (an axes' or the figure's) covers data as drawn: the part of its box inside an axes
    (1 px spared) against a line's segments and markers, a patch (filled: its area), a collection's paths (error
    bars, filled areas), a scatter's dots, anything else's box; each as '<axes>: legend <entry> covers <artist>'."""
    fig.canvas.draw()
    found = []
    for legend in [lg for lg in [*fig.legends, *(ax.get_legend() for ax in fig.axes)] if lg and lg.get_visible()]:
        entry = legend.texts[0].get_text() if legend.texts else ""
        for i, ax in enumerate(fig.axes):
            box = transforms.Bbox.intersection(legend.get_window_extent(), ax.get_window_extent())
            if box is None or min(box.width, box.height) <= 2:
                continue
            for a in [a for a in [*ax.lines, *ax.patches, *ax.collections, *ax.images] if a.get_visible()]:
                if _covers(a, box.padded(-1), fig.dpi / 144):
                    label = str(a.get_label() or "_")  # none, or matplotlib's own ("_child0"): the type alone
                    name = type(a).__name__ + ("" if label.startswith("_") else f" {label!r}")
                    found.append(f"{ax.get_title() or f'axes {i + 1}'}: legend {entry!r} covers {name}")
    return list(dict.fromkeys(found))


def _covers(a, box, px: float) -> bool:
    """Whether artist ``a`` draws in ``box`` (display coordinates; ``px``: a marker's radius in pixels per point)."""
    def drawn(path, filled=False):  # its polylines or polygons, split where it moves or has a gap (NaN)
        pieces = path.cleaned(remove_nans=True).to_polygons(closed_only=False)
        return any(Path(q).intersects_bbox(box, filled) for q in pieces)

    if isinstance(a, lines.Line2D):
        path = a.get_transform().transform_path(a.get_path())
        marked = a.get_marker() not in ("None", "", " ", None)
        return ((marked and box.padded(a.get_markersize() * px).count_contains(path.vertices) > 0)
                or (a.get_linestyle() != "None" and drawn(path)))
    if isinstance(a, patches.Patch):
        return drawn(a.get_transform().transform_path(a.get_path()), a.get_fill())
    if isinstance(a, collections.PathCollection):  # a scatter: markers of area s (points²) at its offsets
        at = a.get_offset_transform().transform(a.get_offsets())
        return box.padded(np.sqrt(a.get_sizes().max(initial=0)) * px).count_contains(at) > 0
    if isinstance(a, collections.Collection):
        return any(drawn(a.get_transform().transform_path(p), a.get_facecolor()[:, 3].any()) for p in a.get_paths())
    return transforms.Bbox.intersection(a.get_window_extent(), box) is not None


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


def _legend_below(ax, ncol: int = 1, **kw):
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, frameon=False, fontsize=9, **kw)


def _seed_means(ax, table, x: str, column: str, **style):
    """Mean of ``column`` (a fraction) over the seeds at each ``x``, in %, with its 95 % interval (none: one seed)."""
    at = {v: d[column] for v, d in table.groupby(x)}
    err = [100 * half_width(one_sample(d).se, len(d) - 1) if len(d) > 1 else 0.0 for d in at.values()]
    return ax.errorbar(list(at), [100 * d.mean() for d in at.values()], yerr=err, marker="o", capsize=3, **style)


def accuracy_gains(curves, gain: float, half: float, data: str):
    """T-acc: coded − plain top-1 gains, the paper's and ours (``gain`` ± ``half``, points), and ours per epoch
    (the seeds' mean and range). ``curves``: network, seed, epoch, val_acc."""
    rows = [r for r in paper.rows("T-acc") if r["quantity"] == paper.ACC]
    names = [r["data"] + (f", {r['scale'].split(',')[1].strip()}" if r["data"] == "ImageNet" else "") for r in rows]
    fig, (gain_ax, epoch_ax) = plt.subplots(1, 2, figsize=(WIDTH, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
    gain_ax.barh(names, [r["value"]["coded"] - r["value"]["resnext"] for r in rows], color=PAPER, label="the paper")
    gain_ax.barh([f"ours: {data}"], [gain], xerr=[half], color=OURS, capsize=4,
                 label=f"ours, 95 % interval (Welch, {curves.groupby('network').seed.nunique().min()} seeds a side)")
    gain_ax.axvline(0, color="k", lw=1)
    gain_ax.invert_yaxis()
    gain_ax.set(xlabel="coded − plain top-1 (points)", ylabel="data set", title="Accuracy gain of coding")
    for (name, d), color in zip(curves.groupby("network", sort=False), (OURS, PLAIN)):
        band = d.groupby("epoch").val_acc.agg(["mean", "min", "max"]).mul(100)
        epoch_ax.plot(band.index, band["mean"], marker="o", color=color, label=name)
        epoch_ax.fill_between(band.index, band["min"], band["max"], color=color, alpha=0.2)
    epoch_ax.set(xlabel="epoch", ylabel="validation top-1 (%)", title="Ours per epoch\n(band: the seeds' range)")
    epoch_ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    for ax in (gain_ax, epoch_ax):
        _legend_below(ax)
    fig.tight_layout()
    return fig


def early_decoders(early, agree, chance: float, data: str):
    """F-early, T-agree: early decoders' accuracy by coded block, ours (``early``: decoder, accuracy) and the paper's,
    and our final accuracy by agreement (``agree``: n_agree, count, accuracy). ``chance``: 100 / K."""
    ours = early[early.decoder != "final"]
    final = 100 * early.accuracy[early.decoder == "final"].item()
    fig = plt.figure(figsize=(WIDTH, 7.4))
    grid = fig.add_gridspec(2, 2, height_ratios=[1.2, 1])
    ours_ax, paper_ax, agree_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
    ours_ax.plot(ours.decoder, 100 * ours.accuracy, marker="o", color=OURS, label="early decoders")
    ours_ax.axhline(final, color="k", ls="--", label=f"final prediction ({final:.1f} %)")
    ours_ax.axhline(chance, color=PAPER, ls=":", label=f"chance ({chance:.0f} %)")
    ours_ax.set(title=f"Ours: {data}", xticks=list(ours.decoder))
    for r, ls in zip(paper.rows("F-early"), ("-", "--")):
        blocks = range(1, len(r["value"]) + 1)
        paper_ax.plot(blocks, r["value"], ls, marker="o", color=PAPER, label=r["scale"].split(",")[1].strip())
    paper_ax.axhline(0.1, color=PAPER, ls=":", label="chance (0.1 %)")
    paper_ax.set(title="The paper: ImageNet, ResNeXt-50", xticks=list(blocks))
    for ax in (ours_ax, paper_ax):
        ax.set(xlabel="coded block", ylabel="accuracy (%)", ylim=(0, 100))
        _legend_below(ax)
    shown = agree[agree["count"] > 0]
    agree_ax.bar(shown.n_agree, 100 * shown.accuracy, color=OURS)
    for a, acc, count in zip(shown.n_agree, shown.accuracy, shown["count"]):
        agree_ax.text(a, 100 * acc, f"n = {count}", ha="center", va="bottom", fontsize=9)
    agree_ax.set(title="Ours: accuracy of the final prediction by agreement", ylim=(0, 110), xticks=list(agree.n_agree),
                 xlabel="early decoders agreeing with the final prediction", ylabel="accuracy (%)")
    fig.tight_layout()
    return fig


def calibration_change(change):
    """T-calib: per split ratio, h_aug − h_T of ECE and MCE over the random splits, the paper's as markers.
    ``change``: split name, split, ece, mce (points)."""
    names = list(dict.fromkeys(change["split name"]))
    refs = [(r["quantity"].split(",")[-1].split()[0], r["data"], r["value"]) for r in paper.rows("T-calib")]
    markers = {"CIFAR-10": "^", "CIFAR-100": "s", "ImageNet": "D"}
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 4.2))
    for j, (ax, metric) in enumerate(zip(axes, ("ece", "mce"))):
        ax.boxplot([change[change["split name"] == n][metric] for n in names], positions=range(len(names)), widths=0.4,
                   patch_artist=True, boxprops={"facecolor": OURS, "alpha": 0.6}, label="ours, over the random splits")
        for split, data, v in refs:
            if split in names:
                ax.scatter(names.index(split) + 0.3, v["h_aug"][j] - v["h_T"][j], marker=markers[data], color="k",
                           zorder=3, label=f"the paper, {data}")
        ax.axhline(0, color="k", lw=1)
        ax.set_xticks(range(len(names)), names)
        ax.set(xlim=(-0.5, len(names) - 0.1), xlabel="calibration / test split",
               ylabel=f"{metric.upper()}: h_aug − h_T (points)",
               title=f"{metric.upper()} change, {len(change) // len(names)} splits each")
    legend = dict(zip(*reversed(axes[0].get_legend_handles_labels())))  # one entry per paper data set
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=2, frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.8 / fig.get_figheight(), 1, 1))
    return fig


def ablation_mu(table):
    """F-mu: final and early-decoder accuracy against μ, mean over the seeds with its 95 % interval.
    ``table``: one row per run: mu, val_acc, early_acc_1.. (fractions)."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.6))
    _seed_means(ax, table, "mu", "val_acc", color="k", lw=2, label="final prediction")
    for col in [c for c in table.columns if c.startswith("early_acc_")]:
        _seed_means(ax, table, "mu", col, ls="--", label=f"early decoder, coded block {col.rsplit('_', 1)[1]}")
    ax.axvline(6, color=PAPER, ls=":", label="the paper's peak (CIFAR-100)")
    ax.set(xlabel="μ", ylabel="validation accuracy (%)", xscale="symlog",
           title=f"F-mu: mean of {table.groupby('mu').size().min()} seed(s), 95 % interval")
    ax.set_xticks(sorted(table.mu.unique()), [f"{v:g}" for v in sorted(table.mu.unique())])  # the values run
    ax.minorticks_off()
    ax.margins(x=0.05)
    _legend_below(ax, ncol=2)
    fig.tight_layout()
    return fig


def ablation_pdrop(table):
    """F-pdrop: accuracy and binary classifiers' mean F1 against p_drop, mean over the seeds with its 95 % interval.
    ``table``: one row per run: p_drop, val_acc, "binary F1" (fractions)."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.0))
    _seed_means(ax, table, "p_drop", "val_acc", color="k", label="validation accuracy")
    _seed_means(ax, table, "p_drop", "binary F1", color="tab:green", label="binary classifiers, mean F1")
    ax.axvline(0.1, color=PAPER, ls=":", label="the paper's best (CIFAR-10)")
    ax.set(xlabel="p_drop", ylabel="accuracy, mean F1 (%)", xticks=sorted(table.p_drop.unique()),
           title=f"F-pdrop: mean of {table.groupby('p_drop').size().min()} seed(s), 95 % interval")
    _legend_below(ax, ncol=2)
    fig.tight_layout()
    return fig


def removal_curves(curves, ratios: dict, main_block=None):
    """F-removal: accuracy with k active or inactive subNNs removed, a panel per block (bars: std over the draws).
    ``curves``: block (0-based), kind, k, accuracy, std; ``ratios``: block -> "N_act/N"."""
    blocks = sorted(curves.block.unique())
    cols = min(2, len(blocks))
    rows = (len(blocks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, 3.3 * rows + 0.7), sharey=True, squeeze=False)
    for ax, b in zip(axes.flat, blocks):
        for kind, d in curves[curves.block == b].groupby("kind"):
            ax.errorbar(d.k, 100 * d.accuracy, yerr=100 * d["std"], marker="o", capsize=3,
                        label=f"{kind} subNNs removed", color={"active": "tab:red", "inactive": OURS}[kind])
        ax.set(title=f"coded block {b + 1} (r = {ratios[b]})" + (", the paper's block" if b == main_block else ""),
               xlabel="k subNNs removed", ylabel="accuracy (%)")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    for ax in axes.flat[len(blocks):]:
        ax.axis("off")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 1))
    return fig


def _class_panels(n: int, xlabel: str, ylabel: str, **kw):
    """A panel per class, five a row; the axes labelled on the outer panels only (at 1.4 inches a panel)."""
    cols = min(5, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, 2.1 * rows + 0.9), squeeze=False, **kw)
    for i, ax in enumerate(axes.flat):
        ax.set(xlabel=xlabel if i + cols >= n else "", ylabel=ylabel if i % cols == 0 else "")
        ax.axis("on" if i < n else "off")
    return fig, axes


def binary_precision_recall(reports: dict, names, n: int = 10):
    """F-binary: precision–recall of the first ``n`` classes' binary classifiers per kind of negatives, a dot at the
    threshold. ``reports``: OOD set -> ``analysis.binary_metrics`` report."""
    first = next(iter(reports.values()))
    negatives = [("ID", "ID negatives (other classes)", first)] + [
        ("OOD", f"OOD negatives: {ood}", rep) for ood, rep in reports.items() if "precision_ood" in rep.table]
    shown = sorted(first.table["class"])[:n]
    fig, axes = _class_panels(len(shown), "recall", "precision", sharex=True, sharey=True)
    for ax, c in zip(axes.flat, shown):
        for (kind, label, rep), color in zip(negatives, (OURS, PLAIN, "tab:green")):
            curve = rep.curves[(rep.curves.negatives == kind) & (rep.curves["class"] == c)]
            ax.plot(curve.recall, curve.precision, lw=1.5, color=color, label=label)
            point = rep.table[rep.table["class"] == c].iloc[0]
            ax.plot(point.recall, point[f"precision_{kind.lower()}"], "o", color=color, ms=4)
        ax.set(title=names[c], xlim=(0, 1.02), ylim=(0, 1.02), xticks=[0, 0.5, 1], yticks=[0, 0.5, 1])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.45 / fig.get_figheight(), 1, 1))
    return fig


def binary_distributions(reports: dict, names, n: int = 10):
    """F-bindist: the first ``n`` classes' binary-classifier logits on positives, other classes and each OOD set.
    ``reports``: OOD set -> ``analysis.binary_metrics`` report."""
    first = next(iter(reports.values()))
    logits = pd.concat([first.logits[first.logits.group != "OOD negative"]]
                       + [rep.logits[rep.logits.group == "OOD negative"].assign(group=f"OOD negative ({ood})")
                          for ood, rep in reports.items()], ignore_index=True)
    groups = list(dict.fromkeys(logits.group))
    colors = dict(zip(groups, ("tab:green", OURS, PLAIN, "tab:purple")))
    shown = sorted(logits["class"].unique())[:n]
    fig, axes = _class_panels(len(shown), "logit", "density")
    for ax, c in zip(axes.flat, shown):
        d = logits[logits["class"] == c]
        bins = np.linspace(d.logit.min(), d.logit.max(), 40)
        for g in groups:
            ax.hist(d[d.group == g].logit, bins=bins, density=True, histtype="step", lw=1.5, color=colors[g], label=g)
        ax.set(title=names[c], xlabel="logit", yticks=[])  # x ranges differ: each panel keeps its own
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=2, frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.7 / fig.get_figheight(), 1, 1))
    return fig
