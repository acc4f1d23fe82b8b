"""The recipes table (docs/recipes.md) and the configs' paper variants agree, field by field.

A change to a config's budget (layers, width, batch, steps, learning rates, ...) must be made in
docs/recipes.md too, and the other way round; each config's docstring names its recipe's source.
"""
import importlib.util
import math
import os

import pytest

from spade_jax.runtime.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LRA_TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
FAMILIES = ("spade", "spade_chunk", "local", "s4", "transformer")
# Table column -> config field.
FIELDS = {
    "layers": "model.num_layers", "d_model": "model.d_model", "heads": "model.num_heads",
    "d_ff": "model.d_ff", "radius": "model.radius", "chunk": "model.chunk_size",
    "d_state": "model.s4.d_state", "dt_min": "model.s4.dt_min", "norm": "model.norm",
    "pooling": "model.pooling", "position": "model.position", "input": "model.input_encoder",
    "dropout": "model.dropout", "ffn_dropout": "model.ffn_dropout", "batch": "batch_size",
    "seq_len": "seq_len", "steps": "num_train_steps", "warmup": "optimizer.warmup_steps",
    "schedule": "optimizer.schedule", "end_lr": "optimizer.end_lr_factor",
    "lr": "optimizer.learning_rate", "ssm_lr": "optimizer.ssm_learning_rate",
    "wd": "optimizer.weight_decay", "b2": "optimizer.b2", "clip": "optimizer.clip_norm",
}
# The columns a family does not use: the only cells that may read '-' (not checked).
UNUSED = {
    "spade": {"chunk"}, "spade_chunk": {"radius"}, "local": {"chunk", "d_state", "dt_min", "ssm_lr"},
    "s4": {"heads", "radius", "chunk", "position"},
    "transformer": {"radius", "chunk", "d_state", "dt_min", "ssm_lr"},
}


def _tables(path):
    """Every markdown table in `path` as a list of {column: cell} rows."""
    tables, header = [], None
    with open(path, encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not line.startswith("|"):
                header = None
            elif header is None:
                header = cells
                tables.append([])
            elif not set(line.strip()) <= set("|-: "):
                assert len(cells) == len(header), f"docs/recipes.md: row {line!r} has " \
                    f"{len(cells)} cells for {len(header)} columns"
                tables[-1].append(dict(zip(header, cells)))
    return tables


def _recipe_rows():
    rows = [r for table in _tables(os.path.join(ROOT, "docs", "recipes.md")) for r in table
            if "task" in r and "family" in r]
    return [pytest.param(r, id=f"{r['task']}-{r['family']}-{'model' if 'recipe' in r else 'optim'}")
            for r in rows]


def _config_module(task):
    spec = importlib.util.spec_from_file_location(f"recipe_config_{task}",
                                                  os.path.join(ROOT, "configs", f"{task}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _field(config, dotted):
    for name in dotted.split("."):
        config = config[name]
    return config


def _matches(cell, value):
    if cell == "main":  # the S4 group at the main learning rate
        return value is None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return cell == str(value)
    return math.isclose(float(cell), value, rel_tol=1e-9, abs_tol=0.0)


@pytest.mark.parametrize("row", _recipe_rows())
def test_paper_variant_matches_the_recipe_table(row):
    task, family = row["task"], row["family"]
    config = _config_module(task).get_config(f"model={family}")
    assert config.variant == "paper"
    for column, cell in row.items():
        if column in ("task", "family", "recipe"):
            continue
        assert column in FIELDS, f"docs/recipes.md: unknown column {column!r}"
        if cell == "-":
            assert column in UNUSED[family], (
                f"docs/recipes.md: {task}/{family} leaves {column} unchecked ('-'), but the "
                f"{family} family uses {FIELDS[column]}")
            continue
        value = _field(config, FIELDS[column])
        assert _matches(cell, value), (
            f"configs/{task}.py:model={family} has {FIELDS[column]} = {value!r}, docs/recipes.md "
            f"says {cell}: change both together")


def test_every_lra_task_and_family_has_one_row_in_each_table():
    tables = [t for t in _tables(os.path.join(ROOT, "docs", "recipes.md"))
              if t and "family" in t[0]]
    lra = [t for t in tables if t[0]["task"] in LRA_TASKS]
    assert len(lra) == 2  # model, optimisation
    for table in lra:
        pairs = sorted((r["task"], r["family"]) for r in table)
        assert pairs == sorted((t, f) for t in LRA_TASKS for f in FAMILIES)
    assert any(r["task"] == "wikitext103" for t in tables for r in t)


@pytest.mark.parametrize("row", [r for r in _recipe_rows() if "recipe" in r.values[0]])
def test_each_config_docstring_names_its_recipe(row):
    source = row["recipe"].split("`")[1]  # the file or folder named in backquotes
    doc = " ".join(_config_module(row["task"]).__doc__.split())
    assert source in doc, f"configs/{row['task']}.py's docstring does not name {source}"


def test_a_wrong_value_is_caught():
    assert not _matches("0.001", 0.002)
    assert not _matches("post", "pre")
    assert not _matches("main", 1e-3)
    assert _matches("90000", 90_000) and _matches("0.00158", 1.58e-3)


def test_wikitext_s4_learning_rate_choices():
    """Default: what the reference ran (S4 at the main, scheduled rate); s4_lr=documented: its
    script's 1e-3 group; named, the choice applies to the quick variant too."""
    module = _config_module("wikitext103")
    assert module.get_config("").optimizer.ssm_learning_rate is None
    assert module.get_config("s4_lr=ran").optimizer.ssm_learning_rate is None
    documented = module.get_config("model=spade,s4_lr=documented")
    assert documented.optimizer.ssm_learning_rate == 1e-3
    assert documented.optimizer.ssm_weight_decay == 0.0
    assert module.get_config("quick").optimizer.ssm_learning_rate == 1e-3
    assert module.get_config("quick,s4_lr=ran").optimizer.ssm_learning_rate is None
    for bad in ("s4_lr=dt", "s4_lr=ran,s4_lr=documented"):
        with pytest.raises(ConfigError, match="s4_lr"):
            module.get_config(bad)
