"""lra.report over fake run folders (results.json as lra.main's finish_run and lm.main's summarize
write them; nothing trains): seeds grouped, SPADE's published column, the LM table, skipped runs."""
import json

import pytest

from lra import published, report
from spade_jax.runtime.errors import DataError, PathError


def _lra_run(root, name, task, model, seed, accuracy, variant="paper", wall=100.0):
    run = root / name
    run.mkdir()
    (run / "results.json").write_text(json.dumps({
        "task": task, "model": model, "variant": variant, "parameters": 1000, "steps": 10,
        "wall_time_s": wall, "best_validation_accuracy": accuracy + 0.01, "best_step": 5,
        "test_accuracy_at_best": accuracy, "test_accuracy_at_last": accuracy - 0.01,
        "majority_class_test_accuracy": 0.2, "stopped_on_budget": False,
        "config": {"task": task, "seed": seed, "model": {"d_model": 8}}}))
    return str(run)


def _lm_run(root, name, seed, valid, test):
    run = root / name
    run.mkdir()
    # lm.main: the loop's results merged with summarize's fields; the seed is in config.json.
    (run / "config.json").write_text(json.dumps({"task": "wikitext103", "seed": seed}))
    (run / "results.json").write_text(json.dumps({
        "steps": 10, "parameters": 5000, "wall_time_s": 50.0,
        "best": {"step": 10, "validation_score": -3.0, "test": {"token_loss": 3.1}},
        "last": {"test": {"token_loss": 3.1}},
        "task": "wikitext103", "model": "spade", "variant": "smoke", "corpus": "/data",
        "tokenizer": "words", "vocab_size": 100,
        "unigram_perplexity": {"valid": 90.0, "test": 95.0}, "test_perplexity_last": test + 1,
        "train_tokens_per_s": 1000.0, "validation_perplexity_best": valid,
        "test_perplexity_best": test}))
    return str(run)


def _row(name, by_task, last):
    """A row of the tables: one cell per registered task ('-' where `by_task` has none)."""
    return (f"| {name} | " + " | ".join(by_task.get(t, "-") for t in report.TASK_ORDER)
            + f" | {last} |")


@pytest.fixture
def runs(tmp_path):
    runs = [_lra_run(tmp_path, "listops-0", "listops", "spade", 0, 0.50),
            _lra_run(tmp_path, "listops-1", "listops", "spade", 1, 0.52),
            _lra_run(tmp_path, "text-0", "text", "spade", 0, 0.80, wall=300.0),
            _lra_run(tmp_path, "listops-s4", "listops", "s4", 0, 0.40, variant="quick")]
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "config.json").write_text(json.dumps({"task": "listops", "seed": 2}))
    garbled = tmp_path / "garbled"
    garbled.mkdir()
    (garbled / "results.json").write_text('{"task": "listops", "mod')
    runs += [str(unfinished), _lm_run(tmp_path, "lm-0", 0, 30.0, 32.0),
             _lm_run(tmp_path, "lm-1", 1, 32.0, 34.0), str(garbled)]
    return runs


def test_seeds_are_grouped_with_mean_std_and_count(runs):
    text = report.table(runs)
    assert text.startswith(report.TABLE_START)
    # ListOps: 50 and 52 over seeds 0 and 1 (sample std 1.41); Text: one seed, its value alone.
    assert _row("spade", {"listops": "51.00 ± 1.41 (n=2)", "text": "80.00"}, "-") in text
    assert _row("s4 (quick)", {"listops": "40.00"}, "-") in text
    assert _row("majority class", {"listops": "20.00", "text": "20.00"}, "-") in text
    assert _row("spade", {"listops": "100", "text": "300"}, "400") in text  # mean wall time
    assert "note:" not in text  # two distinct seeds


def test_spade_published_figures_beside_s4_s5_mega_marked_unconfirmed(runs):
    text = report.table(runs)
    paper = dict(zip(published.PAPER_COLUMNS, "60.50 90.69 91.17 88.22 96.23 97.60".split()))
    assert _row("SPADE (paper) †", paper, "87.40") in text
    assert _row("SPADE (aggregator) ‡", {"text": "86.29"}, "87.40") in text
    s4 = dict(zip(published.PAPER_COLUMNS, "59.60 86.82 90.90 88.65 94.20 96.35".split()))
    assert _row("S4 (v2)", s4, "86.09") in text
    lra = dict(zip(published.PAPER_COLUMNS, "36.37 64.27 57.46 42.44 71.40 fail".split()))
    assert _row("Transformer (LRA paper)", lra, "54.39") in text
    assert "| task | spade | s4 (quick) | SPADE (paper) † | S4 (v2) | S5 | MEGA |" in text
    assert "| ListOps | 51.00 ± 1.41 (n=2) | 40.00 | 60.50 | 59.60 | 62.15 | 63.14 |" in text
    assert "| avg | - | - | 87.40 | 86.09 | 87.46 | 88.21 |" in text
    assert "† SPADE (paper): unconfirmed" in text and "‡ SPADE (aggregator): unverified" in text
    assert "Sources: Transformer (LRA paper): Tay et al., Long Range Arena" in text


def test_published_tables_match_the_reference():
    """The figures of lra/published.py, each with its source."""
    def figures(name):  # in the papers' column order: the six tasks, then the average
        return tuple(published.PUBLISHED[name][column] for column in published.PAPER_COLUMNS)

    assert published.PAPER_COLUMNS[:6] == ("listops", "text", "retrieval", "image", "pathfinder",
                                        "pathx")
    assert figures("MEGA") == (63.14, 90.43, 91.25, 90.44, 96.01, 97.98, 88.21)
    assert figures("S5") == (62.15, 89.31, 91.40, 88.00, 95.33, 98.58, 87.46)
    assert figures("MEGA-chunk") == (58.76, 90.19, 90.97, 85.80, 94.41, 93.81, 85.66)
    assert figures("SPADE (paper)") == (60.50, 90.69, 91.17, 88.22, 96.23, 97.60, 87.40)
    assert set(published.UNCONFIRMED) == {"SPADE (paper)", "SPADE (aggregator)"}
    lm = published.PUBLISHED_LM
    assert lm["SPADE (aggregator)"] == (24.18, 24.55) and lm["MEGA"] == (None, 18.07)
    assert [v for k, v in lm.items() if k.startswith("Adaptive-input")] == [(17.97, 18.70)]
    # every row names where it comes from, and the report prints it
    assert set(published.SOURCES) == set(published.PUBLISHED) | set(published.PUBLISHED_LM)
    assert all("arXiv:" in s or "aggregator" in s or "same paper" in s
               for s in published.SOURCES.values())


def test_lm_runs_get_their_own_table(runs):
    text = report.table(runs)
    assert "| spade (smoke) | 31.00 ± 1.41 (n=2) | 33.00 ± 1.41 (n=2) | 2 (0, 1) |" in text
    assert "| Adaptive-input Transformer (Baevski & Auli; the reference LM, 247M) | 17.97 | " \
           "18.70 |" in text
    assert "| SPADE (aggregator) ‡ | 24.18 | 24.55 |" in text
    assert "| Transformer-XL | - | 18.30 |" in text
    assert "| spade (smoke) | 30" not in text.split("Language model runs")[0]  # not an LRA row


def test_skipped_runs_are_named_with_the_reason(runs, tmp_path):
    text = report.table(runs)
    skipped = text[text.index("Runs left out of the LRA tables:"):]
    lines = skipped.splitlines()[2:]
    assert len(lines) == 4, lines
    assert any(str(tmp_path / "unfinished") in l and "unfinished run" in l for l in lines)
    assert any(str(tmp_path / "garbled") in l and "not valid JSON" in l for l in lines)
    assert sum("lm.main run" in l for l in lines) == 2


def test_a_repeated_seed_is_noted(tmp_path):
    runs = [_lra_run(tmp_path, f"a{i}", "image", "spade", 3, 0.6 + 0.1 * i) for i in range(2)]
    text = report.table(runs)
    assert "| spade | - | - | - | 65.00 ± 7.07 (n=2) | - | - | - |" in text
    assert "note: spade / image: seed 3 in 2 runs" in text


def test_nothing_left_is_an_error_naming_every_run(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(PathError, match="every run was skipped.*a holds no results.json.*b holds"):
        report.table([str(tmp_path / "a"), str(tmp_path / "b")])
    (tmp_path / "b" / "results.json").write_text(json.dumps({"task": "cifar", "model": "x"}))
    with pytest.raises(DataError, match="not an lra.main results file"):
        report.table([str(tmp_path / "a"), str(tmp_path / "b")])
    with pytest.raises(PathError, match="does not exist"):
        report.table([str(tmp_path / "nowhere")])


def test_main_writes_the_tables_and_replaces_its_own_out(runs, tmp_path, capsys):
    out = tmp_path / "results.md"
    assert report.main(runs + [f"--out={out}"]) == 0
    assert report.main(runs[:1] + [f"--out={out}"]) == 0  # an earlier table is replaced
    text = out.read_text()
    assert text.startswith(report.TABLE_START) and "| spade | 50.00 |" in text
    assert "Language model runs" not in text
    assert "skipped" in capsys.readouterr().out


def test_plot_draws_accuracy_per_task_and_model_with_seeds_grouped(runs, tmp_path, monkeypatch):
    from spade_jax.train import plots
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.update(fig=fig, path=path))
    report.plot_accuracy(runs, tmp_path / "accuracy.png")
    ax = drawn["fig"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ListOps", "Text"]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"spade", "s4 (quick)", "majority class"} <= set(labels)
    heights = sorted(round(p.get_height(), 2) for p in ax.patches)
    assert heights == [40.0, 51.0, 80.0]  # listops spade: mean of 50 and 52 (n=2)
    assert "n=2" in [t.get_text() for t in ax.texts]


def test_main_plot_writes_a_png(runs, tmp_path):
    assert report.main(runs + [f"--out={tmp_path / 'r.md'}", f"--plot={tmp_path / 'a.png'}"]) == 0
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
