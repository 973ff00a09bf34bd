"""The book's figures as library functions (coded_lib.companion.plots): each draws from a small table,
labels its axes, keeps its legend off the data, and sizes its error bars by the estimate's interval."""
import math

import matplotlib

matplotlib.use("Agg")
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
