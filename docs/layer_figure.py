"""Draws docs/spade_layer.png, the SPADE layer diagram in the README.

    python -m docs.layer_figure
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spade_layer.png")
COLORS = {"s4": "#f4c27a", "attention": "#8fbce6", "plain": "#e6e6e6", "sum": "#ffffff"}


def _box(ax, x, y, text, kind="plain", width=2.6, height=0.55):
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                boxstyle="round,pad=0.04,rounding_size=0.12",
                                facecolor=COLORS[kind], edgecolor="#333333", linewidth=1.1))
    ax.text(x, y, text, ha="center", va="center", fontsize=9.5)


def _arrow(ax, start, end, color="#333333", **style):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, linewidth=1.1,
                                 color=color, shrinkA=0, shrinkB=0, **style))


def draw(path: str = OUTPUT) -> str:
    fig, ax = plt.subplots(figsize=(9.5, 7.2))
    ax.set_xlim(0, 12)
    ax.set_ylim(0, 10.2)
    ax.axis("off")

    # layer 0, the global SPADE layer
    ax.text(3.6, 9.85, "layer 0: SPADE global layer", ha="center", fontsize=11, weight="bold")
    _box(ax, 3.6, 9.2, "x  (batch, L, d)")
    _box(ax, 3.6, 8.3, "LayerNorm")
    _box(ax, 1.9, 7.1, "S4  (whole sequence)\nO(L log L), FFT", "s4", width=3.0, height=0.8)
    _box(ax, 5.3, 7.1, "local attention\n±radius, O(L·radius)", "attention", width=3.0,
         height=0.8)
    _box(ax, 1.9, 5.95, "LayerNorm", width=2.2)
    _box(ax, 5.3, 5.95, "LayerNorm", width=2.2)
    _box(ax, 3.6, 4.9, "concat → Linear(2d → d)", width=3.0)
    _box(ax, 3.6, 3.95, "+  (dropout, residual)", "sum")
    _box(ax, 3.6, 3.0, "LayerNorm → FFN")
    _box(ax, 3.6, 2.05, "+  (dropout, residual)", "sum")
    _box(ax, 3.6, 1.1, "y  (batch, L, d)")
    _arrow(ax, (3.6, 8.92), (3.6, 8.58))
    _arrow(ax, (3.2, 8.02), (1.9, 7.5))
    _arrow(ax, (4.0, 8.02), (5.3, 7.5))
    _arrow(ax, (1.9, 6.7), (1.9, 6.23))
    _arrow(ax, (5.3, 6.7), (5.3, 6.23))
    _arrow(ax, (1.9, 5.67), (3.1, 5.18))
    _arrow(ax, (5.3, 5.67), (4.1, 5.18))
    _arrow(ax, (3.6, 4.62), (3.6, 4.23))
    _arrow(ax, (3.6, 3.67), (3.6, 3.28))
    _arrow(ax, (3.6, 2.72), (3.6, 2.33))
    _arrow(ax, (3.6, 1.77), (3.6, 1.38))
    # residual paths
    ax.plot([2.3, 0.2, 0.2], [9.2, 9.2, 3.95], color="#777777", linewidth=1.0, linestyle="--")
    _arrow(ax, (0.2, 3.95), (2.3, 3.95), color="#777777", linestyle="--")
    ax.plot([4.9, 6.9, 6.9], [3.95, 3.95, 2.05], color="#777777", linewidth=1.0, linestyle="--")
    _arrow(ax, (6.9, 2.05), (4.9, 2.05), color="#777777", linestyle="--")

    # the layers above
    ax.text(9.7, 9.85, "layers 1 .. n-1", ha="center", fontsize=11, weight="bold")
    _box(ax, 9.7, 9.2, "h  (globally mixed)")
    _box(ax, 9.7, 8.3, "LayerNorm")
    _box(ax, 9.7, 7.3, "local attention\n±radius, O(L·radius)", "attention", width=3.0,
         height=0.8)
    _box(ax, 9.7, 6.3, "+  (dropout, residual)", "sum")
    _box(ax, 9.7, 5.4, "LayerNorm → FFN")
    _box(ax, 9.7, 4.5, "+  (dropout, residual)", "sum")
    for top, bottom in ((8.92, 8.58), (8.02, 7.7), (6.9, 6.58), (6.02, 5.68), (5.12, 4.78)):
        _arrow(ax, (9.7, top), (9.7, bottom))
    ax.text(9.7, 3.55, "× (n - 1), then the head\n(classifier, retrieval MLP or\n"
            "adaptive softmax)", ha="center", va="center", fontsize=9.5)
    _arrow(ax, (4.9, 1.1), (8.2, 9.05), connectionstyle="arc3,rad=0.35", color="#999999")
    ax.text(6.2, 0.35, "S4 gives every position the whole sequence once; the cheap local "
            "attention above then works on globally mixed features.", ha="center", fontsize=9,
            style="italic")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(f"wrote {draw()}")
