"""Writes docs/configs.md, the configuration reference, from the code: every field of the engine's
`default_config()` and of the model (`default_model_config()`) with its default and the comment
beside it in the source, then each experiment config's PAPER / QUICK / SMOKE overrides.

    python -m docs.config_reference            # rewrites docs/configs.md
    python -m docs.config_reference --check    # exit 1 if docs/configs.md is out of date

tests/test_docs.py runs the check, so a config change without a regenerated reference fails.
"""
import argparse
import glob
import importlib.util
import inspect
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "docs", "configs.md")
VARIANTS = ("PAPER", "QUICK", "SMOKE")
# `name = value  # comment` (engine: `c.name = ...`; dataclasses: `name: type = ...`)
COMMENTED = re.compile(r"^\s*(?:c\.)?(\w+)\s*(?::[^=]+)?=[^#]*#\s*(.+)$")
# `    name: text` (and `    a, b: text`) entries of a docstring, continued by deeper lines
DOC_ENTRY = re.compile(r"^    ((?:\w+, )*\w+): (.+)$")
# The engine's fields that carry no comment in spade_jax/train/defaults.py.
ENGINE = {
    "async_checkpoints": "write checkpoints in the background (orbax async)",
    "checkpoint_every": "steps between checkpoints in WORKDIR/checkpoints (0: at the end and on "
                        "SIGTERM only)",
    "grad_accum_steps": "micro-batches per update; batch_size is split into them",
    "keep_checkpoints": "latest checkpoints kept in WORKDIR/checkpoints",
    "log_every": "steps between training records (metrics.jsonl, TensorBoard)",
    "logical_axis_rules": "logical axis name -> mesh axes (spade_jax.train.sharding)",
    "mesh.data": "data-parallel mesh axis size; -1 fills the remaining devices",
    "mesh.dcn_data": "multislice: slices the data axis spans over the data-centre network (0: as "
                     "many as the devices form; data within a slice = data / dcn_data)",
    "mesh.fsdp": "parameter-sharded data-parallel axis size (-1: the rest)",
    "mesh.tensor": "tensor-parallel axis size (-1: the rest)",
    "num_train_steps": "optimiser updates",
    "seed": "parameter initialisation, dropout and data order",
    "optimizer.name": "'adamw' / 'adam' / 'sgd' (momentum, nesterov)",
    "optimizer.schedule": "after linear warmup: 'cosine' / 'linear' / 'constant'",
    "optimizer.end_lr_factor": "final learning rate / peak (cosine, linear)",
    "optimizer.learning_rate": "peak learning rate",
    "optimizer.warmup_steps": "linear warmup from 0",
    "optimizer.clip_norm": "global gradient-norm clipping (0: none)",
    "optimizer.ssm_learning_rate": "peak learning rate of S4's A, P, B, dt (no weight decay)",
    "optimizer.ssm_weight_decay": "weight decay of S4's A, P, B, dt",
    "optimizer.freeze_ssm": "do not train S4's A, P, B, dt",
    "optimizer.weight_decay": "decoupled (adamw) / L2 (sgd); none on biases and norms",
    "optimizer.b1": "Adam beta1", "optimizer.b2": "Adam beta2", "optimizer.eps": "Adam epsilon",
    "optimizer.momentum": "sgd momentum", "optimizer.nesterov": "sgd with Nesterov momentum",
}

# Model fields that the ModelConfig docstring and comments leave undescribed.
MODEL = {
    "vocab_size": "token ids (set by the task / corpus)", "pad_id": "the padding id",
    "num_layers": "blocks", "d_model": "width", "num_heads": "attention heads",
    "d_ff": "feed-forward hidden width", "dropout": "residual dropout",
    "ffn_dropout": "dropout after the FFN activation", "causal": "causal masks (language model)",
    "final_norm": "a LayerNorm after the last block", "max_len": "longest input (positions, "
    "S4 kernel length)", "radius": "window attention: each token sees +-radius tokens",
    "chunk_size": "chunk attention: tokens per chunk",
    "global_layers": "spade: the layers with S4 beside local attention",
    "relpos_buckets": "T5 relative-bias buckets", "relpos_max_distance": "T5 bias: the "
    "distance beyond which buckets are shared", "num_classes": "classify / retrieval heads",
    "tie_embeddings": "lm head: output layer shares the input embedding",
    "adaptive_factor": "adaptive input / softmax: width divisor per band",
    "s4.d_state": "S4 state size N (even)", "s4.dt_min": "smallest initial step size",
    "s4.dt_max": "largest initial step size",
}


def _comments(module) -> dict:
    """{field: the comment on its line} from a module's source."""
    found = {}
    for line in inspect.getsource(module).splitlines():
        match = COMMENTED.match(line)
        if match:
            found.setdefault(match.group(1), match.group(2).strip())
    return found


def _doc_entries(text: str) -> dict:
    """{field: its description} from `name: text` entries of a docstring."""
    found, current = {}, None
    for line in text.splitlines():
        match = DOC_ENTRY.match(line)
        if match:
            current = match.group(1).split(", ")
            for name in current:
                found[name] = match.group(2).strip()
        elif current and line.startswith("      "):
            for name in current:
                found[name] += " " + line.strip()
        else:
            current = None
    return found


def _flatten(config, prefix="") -> dict:
    """{'optimizer.learning_rate': 0.001, ...} for a ConfigDict (or dict), nested sections."""
    out = {}
    for key, value in config.items():
        if hasattr(value, "items"):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _cell(value) -> str:
    text = repr(value).replace("|", "\\|")
    return f"`{text}`" if len(text) <= 60 else f"`{text[:57]}...`"


def _load(path):
    spec = importlib.util.spec_from_file_location(f"_config_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fields_table(values: dict, comments: dict, prefix: str = "") -> list:
    lines = ["| field | default | meaning |", "|---|---|---|"]
    for name, value in values.items():
        meaning = comments.get(name) or comments.get(name.split(".")[-1], "")
        lines.append(f"| `{prefix}{name}` | {_cell(value)} | {meaning.replace('|', '/')} |")
    return lines


def _variant_table(module) -> list:
    dicts = {v: _flatten(getattr(module, v, {}) or {}) for v in VARIANTS}
    keys = list(dict.fromkeys(k for v in VARIANTS for k in dicts[v]))
    lines = ["| field | paper | quick | smoke |", "|---|---|---|---|"]
    for key in keys:
        cells = [_cell(dicts[v][key]) if key in dicts[v] else "" for v in VARIANTS]
        lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
    for name, column in (("PAPER_BY_FAMILY", "paper"), ("QUICK_BY_FAMILY", "quick")):
        for family, overrides in (getattr(module, name, None) or {}).items():
            values = ", ".join(f"`{k}` = {_cell(v)}" for k, v in _flatten(overrides).items())
            lines += ["", f"{column.capitalize()} variant of family `{family}` (`{name}`), on "
                          f"top of the {column} column: {values}."]
    return lines


def render() -> str:
    from lra import configs as lra_configs
    from spade_jax.model import families
    from spade_jax.model import config as model_config_module
    from spade_jax.train import defaults

    engine = defaults.default_config()
    model = _flatten(engine.model)
    del engine["model"]
    out = [
        "# Configuration reference",
        "",
        "Generated by `python -m docs.config_reference` from `spade_jax.train.defaults."
        "default_config()`, `spade_jax.model.config.ModelConfig` and `configs/*.py`; do not edit by "
        "hand (a test checks that it is current). Any field can be overridden on the command "
        "line: `--config.batch_size=8`, `--config.model.d_model=256`, "
        "`--config.optimizer.learning_rate=5e-4`.",
        "",
        "An experiment config is built in layers: the engine's defaults below, then the task's "
        "fields (vocabulary, classes, length: `lra.configs.build` / `lm.configs.build`), then the "
        "config file's `PAPER` dict; the `:quick` and `:smoke` variants apply their dicts on top "
        "of `PAPER` (for LRA tasks after the shared `QUICK_COMMON` / `SMOKE_COMMON`). "
        "`:model=<family>` sets the family fields.",
        "",
        "## Engine (`spade_jax.train.defaults.default_config()`)",
        "",
        *_fields_table(_flatten(engine), {**ENGINE, **_comments(defaults)}),
        "",
        "## Model (`config.model`, checked by `spade_jax.model.config.ModelConfig`)",
        "",
        "Allowed values and the meaning of each field: the `ModelConfig` docstring in "
        "`spade_jax/model/config.py`.",
        "",
        *_fields_table(model, {**MODEL, **_doc_entries(model_config_module.ModelConfig.__doc__),
                               **_comments(model_config_module)}, "model."),
        "",
        "## LRA variants shared by every task (`lra.configs`)",
        "",
        "| field | quick (`QUICK_COMMON`) | smoke (`SMOKE_COMMON`) |",
        "|---|---|---|",
    ]
    shared = list(dict.fromkeys([*lra_configs.QUICK_COMMON, *lra_configs.SMOKE_COMMON]))
    for key in shared:
        cells = [_cell(d[key]) if key in d else ""
                 for d in (lra_configs.QUICK_COMMON, lra_configs.SMOKE_COMMON)]
        out.append(f"| `{key}` | " + " | ".join(cells) + " |")
    out += ["", "Families (`:model=`): " + ", ".join(
        f"`{name}` ({', '.join(f'{k}={v}' for k, v in fields.items())})"
        for name, fields in ((n, families.model_fields(n)) for n in families.FAMILIES)) + ".", ""]
    for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
        module = _load(path)
        name = os.path.relpath(path, ROOT)
        summary = (module.__doc__ or "").strip().splitlines()[0]
        out += [f"## `{name}`", "", summary, "",
                "Commands, hardware and expected results: the docstring of the file. "
                "Overrides per variant (empty: not set by that variant):", "",
                *_variant_table(module), ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) docs/configs.md.")
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = open(OUTPUT, encoding="utf-8").read() if os.path.exists(OUTPUT) else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run python -m docs.config_reference", file=sys.stderr)
            return 1
        print(f"{OUTPUT} is current")
        return 0
    with open(OUTPUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
