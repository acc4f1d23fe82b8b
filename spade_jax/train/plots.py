"""Figures of runs: a run's learning curve, and a metric per task over many runs.

    learning_curve(workdir, title="listops / spade (quick): 0.2M parameters, 1200 steps")
        -> WORKDIR/learning_curve.png: training loss and the validation metric against the step
    grouped_bars({"listops": {"spade": (37.1, 0.8, 3)}, ...}, path, title=..., ylabel=...)
        -> one group of bars per task, one bar per model (mean, error bar = std, n runs)

matplotlib is imported here only (the Agg backend: no screen needed); the figures are written
through spade_jax.runtime.paths, so a workdir on object storage works too.
"""
import io

from spade_jax.runtime import paths
from spade_jax.train import metrics


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    plt = _pyplot()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=100)
    plt.close(fig)
    paths.write_bytes(path, image.getvalue())
    return paths.workdir_path(path)


def variant_suffix(variant) -> str:
    """' (quick)' after a run's name; nothing for the paper variant (recorded as 'full' before
    2026-12) or an unrecorded one."""
    return "" if variant in ("paper", "full", None) else f" ({variant})"


def run_title(task: str, model: str, variant: str, parameters: int | None, steps: int | None) -> str:
    """'listops / spade (quick): 0.21M parameters, 1,200 steps' (the parts that are known)."""
    title = f"{task} / {model}" + variant_suffix(variant)
    facts = ([f"{parameters / 1e6:.2f}M parameters"] if parameters else []) + \
        ([f"{steps:,} steps"] if steps else [])
    return title + (": " + ", ".join(facts) if facts else "")


def curve_points(records: list, split: str, name: str) -> tuple:
    """(steps, values) of metric `name` in the records of `split`, by step."""
    points = sorted((r["step"], r[name]) for r in records
                    if r.get("split") == split and isinstance(r.get(name), (int, float))
                    and isinstance(r.get("step"), int))
    return [s for s, _ in points], [v for _, v in points]


def learning_curve(workdir, *, title: str, validation: str = "accuracy"):
    """WORKDIR/learning_curve.png from WORKDIR/metrics.jsonl (see curve_figure). Returns the
    image's path."""
    fig = curve_figure(metrics.read_records(workdir), title=title, validation=validation)
    return _save(fig, paths.workdir_path(workdir) / "learning_curve.png")


def curve_figure(records: list, *, title: str, validation: str = "accuracy"):
    """The training loss (left axis) and the validation `validation` metric ('accuracy', or
    'perplexity' for language models: right axis, log scale) of metrics records against the
    step, the best validation point marked, one legend for both lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps, losses = curve_points(records, "train", "loss")
    lines = ax.plot(steps, losses, color="C0", label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    steps, values = curve_points(records, "validation", validation)
    if steps:
        right = ax.twinx()
        lines += right.plot(steps, values, "o-", color="C1", markersize=3,
                            label=f"validation {validation}")
        pick = min if validation == "perplexity" else max
        best = values.index(pick(values))
        lines += right.plot([steps[best]], [values[best]], "*", color="C3", markersize=12,
                            label=f"best validation {validation}: {values[best]:.4g} "
                                  f"(step {steps[best]})")
        right.set_ylabel(f"validation {validation}")
        if validation == "perplexity":
            right.set_yscale("log")
    ax.legend(lines, [line.get_label() for line in lines], loc="best", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def grouped_bars(groups: dict, path, *, title: str, ylabel: str, reference: dict | None = None):
    """Writes bars_figure(...) to `path`; returns the image's path."""
    return _save(bars_figure(groups, title=title, ylabel=ylabel, reference=reference), path)


def bars_figure(groups: dict, *, title: str, ylabel: str, reference: dict | None = None):
    """A bar chart of {group: {series: (mean, std or None, n)}}: one cluster per group (e.g. a
    task), one bar per series (e.g. a model), error bars where std is known, the run count above
    each bar. `reference` ({group: value}, optional) is drawn as a dashed line per group (e.g.
    the majority class)."""
    plt = _pyplot()
    names = sorted({s for per in groups.values() for s in per})
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4))
    for i, name in enumerate(names):
        xs = [g + (i - (len(names) - 1) / 2) * width for g, group in enumerate(groups)
              if name in groups[group]]
        cells = [groups[group][name] for group in groups if name in groups[group]]
        bars = ax.bar(xs, [c[0] for c in cells], width, label=name, color=f"C{i}",
                      yerr=[c[1] or 0.0 for c in cells], capsize=3)
        for bar, cell in zip(bars, cells):
            ax.annotate(f"n={cell[2]}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=6, xytext=(0, 2),
                        textcoords="offset points")
    drawn = [g for g, group in enumerate(groups) if (reference or {}).get(group) is not None]
    for g in drawn:
        ax.hlines(reference[list(groups)[g]], g - 0.45, g + 0.45, colors="gray",
                  linestyles="dashed", label="majority class" if g == drawn[0] else None)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
