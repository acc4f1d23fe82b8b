"""Log-log plots of the rows (<name>.png): `series_points` gathers each series' ok points,
`loglog_plot` draws panels of them with grey guide slopes."""
import numpy as np

from benchmarks.flags import length_label
from benchmarks.rows import OK, SKIPPED

GUIDES = ((1, "slope 1 (linear)"), (2, "slope 2 (quadratic)"))
# For quantities per token: flat = linear in L per sequence, slope 1 = quadratic.
PER_TOKEN_GUIDES = ((0, "flat (linear per sequence)"), (1, "slope 1 (quadratic per sequence)"))


def series_points(rows: list, value, *, key=lambda r: r["label"]) -> dict:
    """{series label (with its stop reason): (lengths, values)} of the ok rows, for a plot."""
    out, stops = {}, {}
    for r in rows:
        name = key(r)
        out.setdefault(name, ([], []))
        if r["status"] == OK and value(r) is not None:
            out[name][0].append(r["length"])
            out[name][1].append(value(r))
        elif r["status"] != SKIPPED:
            stops[name] = f"{r['status']} at {length_label(r['length'])}"
    return {(f"{k} ({stops[k]})" if k in stops else k): v for k, v in out.items()}


def loglog_plot(path: str, panels: list, title: str, ncols: int = 2) -> None:
    """Log-log line plots, written to `path` (PNG).

    panels: dicts with 'title', 'ylabel', 'series' ({label: (xs, ys)}), and optionally 'xlabel'
    (default: sequence length L) and 'guides' ((slope, label) pairs drawn as grey lines through
    the lowest first point; default GUIDES; () for none).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 4.8 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels):
        xs_all = sorted({x for xs, _ in panel["series"].values() for x in xs})
        for label, (xs, ys) in panel["series"].items():
            if len(xs):
                ax.plot(xs, ys, marker="o", label=label)
        starts = [(xs[0], ys[0]) for xs, ys in panel["series"].values() if len(xs)]
        if len(xs_all) > 1:
            x0, y0 = min(starts)
            x = np.array([xs_all[0], xs_all[-1]], float)
            for (slope, label), style in zip(panel.get("guides", GUIDES), (":", "--", "-.")):
                ax.plot(x, y0 * (x / x0) ** slope, style, color="gray", linewidth=0.8, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        if xs_all:
            ax.set_xticks(xs_all, [length_label(int(x)) for x in xs_all])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.legend(fontsize=7)
        ax.set_xlabel(panel.get("xlabel", "sequence length L"))
        ax.set_ylabel(panel["ylabel"])
        ax.set_title(panel["title"], fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
