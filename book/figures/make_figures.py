"""Draw the static figures of the book's introduction: `python book/figures/make_figures.py`.

The executed notebooks carry every other figure; this one only shows the paper's
CIFAR-10 coding schemes (printed in its appendix), so it is drawn once and committed.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SCHEMES = {
    "r = 5/10": ["1010100011", "0101010101", "1101100010", "0011001101", "1010010101",
                 "1001001110", "1011101000", "0100011110", "0110111000", "0100110011"],
    "r = 3/10": ["1001001000", "0110001000", "1010000001", "0000001110", "0001010100",
                 "0010100100", "0000110010", "0100010001", "0001100001", "1100000010"],
}


def main(out=Path(__file__).with_name("schemes.png")):
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), constrained_layout=True)
    for ax, (name, words) in zip(axes, SCHEMES.items()):
        table = np.array([[int(b) for b in w] for w in words])
        ax.imshow(table, cmap="Greys", vmin=0, vmax=1.3)
        ax.set_xticks(range(10), [str(n + 1) for n in range(10)])
        ax.set_yticks(range(10), CLASSES if ax is axes[0] else [])
        ax.set_xticks(np.arange(-0.5, 10), minor=True)
        ax.set_yticks(np.arange(-0.5, 10), minor=True)
        ax.grid(which="minor", color="white", linewidth=1.5)
        ax.tick_params(which="minor", length=0)
        ax.set_xlabel("subNN")
        ax.set_title(name)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
