"""spade_jax.train.plots: what a learning curve and a per-task bar chart show (legend, title, the best
validation point), read back from the matplotlib figures, and the PNG files they are saved as."""
import json

import pytest

from spade_jax.train import plots

pytest.importorskip("matplotlib")


def _records(validation="accuracy", values=(0.3, 0.6, 0.5)):
    train = [{"step": s, "split": "train", "loss": 2.0 / s} for s in range(1, 31)]
    valid = [{"step": 10 * (i + 1), "split": "validation", validation: v}
             for i, v in enumerate(values)]
    return train + valid


def _legend(fig):
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_learning_curve_has_both_lines_one_legend_and_the_best_validation_step(tmp_path):
    fig = plots.curve_figure(_records(), title="listops / spade (quick): 0.21M parameters")
    assert _legend(fig) == ["training loss", "validation accuracy",
                            "best validation accuracy: 0.6 (step 20)"]
    assert fig.axes[0].get_title() == "listops / spade (quick): 0.21M parameters"
    assert fig.axes[0].get_xlabel() == "step" and fig.axes[1].get_ylabel() == "validation accuracy"
    assert list(fig.axes[0].lines[0].get_xdata()) == list(range(1, 31))


def test_perplexity_curve_marks_the_lowest_and_uses_a_log_axis():
    fig = plots.curve_figure(_records("perplexity", (300.0, 120.0, 150.0)), title="lm",
                             validation="perplexity")
    assert _legend(fig)[-1] == "best validation perplexity: 120 (step 20)"
    assert fig.axes[1].get_yscale() == "log"


def test_learning_curve_file_from_metrics_jsonl(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in _records()) + "\n")
    path = plots.learning_curve(tmp_path, title="t")
    assert str(path) == str(tmp_path / "learning_curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_title():
    assert plots.run_title("listops", "spade", "quick", 212_000, 1200) == \
        "listops / spade (quick): 0.21M parameters, 1,200 steps"
    assert plots.run_title("text", "s4", "paper", None, None) == "text / s4"


def test_bars_one_cluster_per_group_with_counts_and_the_reference(tmp_path):
    groups = {"listops": {"spade": (37.0, 1.0, 3), "s4": (35.0, None, 1)},
              "text": {"spade": (70.0, 2.0, 2)}}
    fig = plots.bars_figure(groups, title="LRA", ylabel="test accuracy (%)",
                            reference={"listops": 16.0, "text": None})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["listops", "text"]
    assert sorted(t.get_text() for t in ax.texts) == ["n=1", "n=2", "n=3"]
    assert sorted(_legend(fig)) == ["majority class", "s4", "spade"]
    heights = sorted(round(p.get_height(), 3) for p in ax.patches)
    assert heights == [35.0, 37.0, 70.0]
    path = plots.grouped_bars(groups, tmp_path / "bars.png", title="LRA", ylabel="%")
    assert path.read_bytes()[:4] == b"\x89PNG"
