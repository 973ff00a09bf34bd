"""The book's figures as library functions (coded_lib.companion.plots): each draws from a small table,
labels its axes, keeps its legend off the data, and sizes its error bars by the estimate's interval."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from coded_lib.companion import plots  # noqa: E402


def test_half_width_is_the_t_interval():
    assert plots.half_width(1.0, 4) == pytest.approx(2.776, abs=1e-3)  # printed t table, df 4
    assert plots.half_width(2.0, math.inf) == pytest.approx(3.92, abs=1e-2)
    assert plots.half_width(math.inf, 1) == 0.0  # one seed: nothing to draw


def test_scale_figure_from_a_small_table():
    table = pd.DataFrame({"train_images": [2000, 8000, 60000], "seeds": [3, 3, 3],
                          "gap (points)": [-1.0, 0.2, 0.8], "gap SE": [0.5, 0.4, 0.3], "gap df": [4.0, 3.5, 4.0],
                          "precision": [0.6, 0.7, 0.8], "precision SE": [0.02, 0.02, 0.01],
                          "F1": [0.55, 0.68, 0.79], "F1 SE": [0.02, 0.02, 0.01]})
    fig = plots.scale_figure(table)
    gap_ax, bin_ax = fig.axes
    for ax in fig.axes:
        assert ax.get_xlabel() == "training images" and ax.get_ylabel() and ax.get_title()
        assert [t.get_text() for t in ax.get_xticklabels()] == ["2k", "8k", "60k"]
        legend = ax.get_legend()
        assert legend is not None
        fig.canvas.draw()
        box, area = legend.get_window_extent(), ax.get_window_extent()
        assert box.y1 <= area.y0 + 1  # below the axes, never over the data
    # the gap's error bars: t_crit(df) x SE, e.g. 2.776 x 0.5 at 2,000 images
    bars = gap_ax.containers[0]
    low, high = bars.lines[2][0].get_segments()[0][:, 1]
    assert (high - low) / 2 == pytest.approx(2.776 * 0.5, abs=2e-3)


# --- the chapters' figures: labelled axes, one mark per row given, legends off the data -------------

def _assert_legends_off_the_data(fig):
    assert fig.legends or any(ax.get_legend() for ax in fig.axes), "a figure with series says which is which"
    assert not plots.legend_overlaps(fig), plots.legend_overlaps(fig)


def test_a_legend_over_the_data_is_found():
    """The check the figures above pass: a legend over the plotted points, bars, error bars, dots or a filled
    area is named; one in the empty corner of a line's bounding box (off its points), or below the axes, is not."""
    x = np.linspace(0, 1, 200)
    fig, (line_ax, bar_ax) = plt.subplots(1, 2, figsize=(7.6, 3))
    line_ax.plot(x, x ** 2, label="x²")
    line_ax.errorbar([0.2, 0.8], [0.1, 0.1], yerr=0.05, ls="none", label="error bars")
    line_ax.legend(loc="upper left")  # the empty corner above the parabola
    bar_ax.bar(range(5), [4, 5, 6, 5, 4], label="bars")
    bar_ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15))  # below the axes
    assert plots.legend_overlaps(fig) == []
    bar_ax.set_title("bars")
    bar_ax.legend(loc="center")
    assert plots.legend_overlaps(fig) == ["bars: legend 'bars' covers Rectangle"]
    line_ax.legend(loc="lower left")  # over the parabola's start and the left error bar
    assert plots.legend_overlaps(fig) == ["axes 1: legend 'x²' covers Line2D 'x²'",
                                          "axes 1: legend 'x²' covers LineCollection",
                                          "bars: legend 'bars' covers Rectangle"]
    rng = np.random.default_rng(0)
    for plant in (lambda ax: ax.scatter(*rng.random((2, 300)), label="dots"),
                  lambda ax: ax.fill_between(x, 0.2, 0.8, label="band")):
        fig, ax = plt.subplots()
        artist = plant(ax)
        ax.legend(loc="center")
        name = f"{type(artist).__name__} {artist.get_label()!r}"
        assert plots.legend_overlaps(fig) == [f"axes 1: legend {artist.get_label()!r} covers {name}"]
    plt.close("all")


def _assert_labelled(axes):
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()


def _assert_outer_labelled(fig, n, cols=5, every_x=False):
    """Panels of a grid per class: x labelled on the lowest panel of each column (on each one where the panels'
    x ranges differ), y on the first of each row."""
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == n
    for i, ax in enumerate(panels):
        assert bool(ax.get_xlabel()) == (every_x or i + cols >= n), (i, ax.get_title())
        assert bool(ax.get_ylabel()) == (i % cols == 0), (i, ax.get_title())


def _markers(line):
    return len(line.get_xdata())


def test_accuracy_gains():
    curves = pd.DataFrame({"network": ["Coded ResNeXt"] * 6 + ["ResNeXt"] * 6, "seed": [0, 0, 0, 1, 1, 1] * 2,
                           "epoch": [1, 2, 3] * 4,
                           "val_acc": [0.5, 0.7, 0.8, 0.52, 0.69, 0.81, 0.5, 0.66, 0.79, 0.49, 0.7, 0.8]})
    fig = plots.accuracy_gains(curves, 0.4, 1.1, "Fashion-MNIST")
    gain_ax, epoch_ax = fig.axes
    _assert_labelled(fig.axes)
    assert len(gain_ax.patches) == 4 + 1  # the paper's four trainings and ours
    assert [t.get_text() for t in gain_ax.get_yticklabels()][-1] == "ours: Fashion-MNIST"
    means = [ln for ln in epoch_ax.lines if ln.get_label() in ("Coded ResNeXt", "ResNeXt")]
    assert [_markers(ln) for ln in means] == [3, 3]  # one point per epoch
    assert list(means[0].get_ydata()) == pytest.approx([51, 69.5, 80.5])
    _assert_legends_off_the_data(fig)


def test_early_decoders():
    early = pd.DataFrame({"decoder": [1, 2, 3, 4, "final"], "accuracy": [0.3, 0.5, 0.7, 0.8, 0.85]})
    agree = pd.DataFrame({"n_agree": [0, 1, 2, 3, 4], "count": [5, 0, 10, 20, 65],
                          "accuracy": [0.2, float("nan"), 0.5, 0.8, 0.95]})
    fig = plots.early_decoders(early, agree, 10.0, "Fashion-MNIST")
    ours_ax, paper_ax, agree_ax = fig.axes
    _assert_labelled(fig.axes)
    assert _markers(ours_ax.lines[0]) == 4 and list(ours_ax.get_xticks()) == [1, 2, 3, 4]  # blocks from 1
    assert [_markers(ln) for ln in paper_ax.lines if ln.get_label().startswith("μ")] == [9, 9]
    assert len(agree_ax.patches) == 4  # the four agreement levels with images
    _assert_legends_off_the_data(fig)


def test_calibration_change():
    change = pd.DataFrame({"split name": ["25/75"] * 3 + ["50/50"] * 3, "split": [0, 1, 2] * 2,
                           "ece": [0.1, -0.2, 0.0, 0.1, 0.2, -0.1], "mce": [-1.0, -2.0, 0.5, -0.5, 0.3, -1.2]})
    fig = plots.calibration_change(change)
    _assert_labelled(fig.axes)
    for ax in fig.axes:
        assert len(ax.patches) == 2  # a box per split ratio
        assert len(ax.collections) == 6  # the paper's three data sets at each ratio
        assert [t.get_text() for t in ax.get_xticklabels()] == ["25/75", "50/50"]
    _assert_legends_off_the_data(fig)


def _grid(param, values, seeds, acc):
    return pd.DataFrame([{param: v, "seed": s, "val_acc": acc + 0.01 * s + 0.02 * i, "early_acc_1": 0.3 + 0.01 * s,
                          "early_acc_2": 0.5 + 0.02 * s, "binary F1": 0.6 + 0.01 * s}
                         for i, v in enumerate(values) for s in seeds])


@pytest.mark.parametrize("seeds", [[0, 1, 2], [0]])
def test_ablation_mu_has_error_bars_over_the_seeds(seeds):
    table = _grid("mu", [0.0, 2.0, 6.0, 20.0], seeds, 0.8)
    fig = plots.ablation_mu(table)
    ax, = fig.axes
    _assert_labelled(fig.axes)
    assert len(ax.containers) == 3  # final and two early decoders
    for bars in ax.containers:
        assert _markers(bars.lines[0]) == 4  # one mean per μ
    low, high = ax.containers[0].lines[2][0].get_segments()[0][:, 1]
    # t(2) x SE of 80, 81, 82 (%): 4.303 x 1 / sqrt(3); one seed: no bar
    assert (high - low) / 2 == pytest.approx(4.303 / math.sqrt(3) if len(seeds) == 3 else 0, abs=1e-2)
    _assert_legends_off_the_data(fig)


def test_ablation_pdrop():
    fig = plots.ablation_pdrop(_grid("p_drop", [0.0, 0.1, 0.2], [0, 1, 2], 0.8))
    ax, = fig.axes
    _assert_labelled(fig.axes)
    assert [_markers(bars.lines[0]) for bars in ax.containers] == [3, 3]
    _assert_legends_off_the_data(fig)


def test_removal_curves_number_blocks_from_one():
    curves = pd.DataFrame([{"block": b, "kind": kind, "k": k, "std": 0.01,
                            "accuracy": 0.9 - 0.1 * k * (kind == "active")}
                           for b in (1, 2, 3) for kind in ("active", "inactive") for k in range(4)])
    fig = plots.removal_curves(curves, {1: "5/10", 2: "3/10", 3: "3/10"}, main_block=1)
    shown = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in shown] == ["coded block 2 (r = 5/10), the paper's block",
                                                "coded block 3 (r = 3/10)", "coded block 4 (r = 3/10)"]
    _assert_labelled(shown)
    for ax in shown:
        assert [_markers(bars.lines[0]) for bars in ax.containers] == [4, 4]
    _assert_legends_off_the_data(fig)


def _reports(k=3):
    from coded_lib.analysis import binary_metrics

    rng = np.random.default_rng(0)
    targets = np.repeat(np.arange(k), 20)
    scores = rng.normal(size=(20 * k, k)) + 2 * np.eye(k)[targets]
    return {"MNIST": binary_metrics(scores, targets, scores, targets, rng.normal(size=(30, k)))}


def test_binary_precision_recall():
    reports = _reports()
    fig = plots.binary_precision_recall(reports, list("abcdefg"))
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == ["a", "b", "c"]
    _assert_outer_labelled(fig, 3)
    rep = reports["MNIST"]
    for ax, c in zip(panels, range(3)):
        curves, dots = ax.lines[0::2], ax.lines[1::2]
        assert [_markers(ln) for ln in curves] == [int(((rep.curves["class"] == c) & (rep.curves.negatives == k)).sum())
                                                   for k in ("ID", "OOD")]
        assert [_markers(ln) for ln in dots] == [1, 1]
    _assert_legends_off_the_data(fig)


def test_binary_distributions():
    fig = plots.binary_distributions(_reports(7), list("abcdefg"), n=6)
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == list("abcdef")
    _assert_outer_labelled(fig, 6, every_x=True)
    for ax in panels:
        assert len(ax.patches) == 3  # positives, ID negatives, OOD negatives
    _assert_legends_off_the_data(fig)
