"""Building LRA experiment configs: model families, variants and `key=value` overrides.

Each `configs/<task>.py` calls `build(task, arg, full=..., quick=..., smoke=...)` with its own
hyperparameters; the config-path argument chooses the family and the variant, big_vision style:

    configs/listops.py                       paper-scale SPADE run
    configs/listops.py:quick                 CPU run (generated data, <= 10 min on 2 cores)
    configs/text.py:model=transformer,quick  another family, quick
    configs/pathx.py:smoke                   seconds, for tests

Families: spade (window attention beside the global S4 layer; default), spade_chunk (chunk
attention), transformer (full attention), local (window attention only), s4 (S4 blocks only).
"""
import ml_collections

from lra.data import TASKS
from spade_jax.errors import ConfigError, check_dotted
from spade_jax.train.defaults import default_config

FAMILIES = {
    "spade": dict(family="spade", local_attention="window"),
    "spade_chunk": dict(family="spade", local_attention="chunk"),
    "transformer": dict(family="transformer"),
    "local": dict(family="local", local_attention="window"),
    "s4": dict(family="s4"),
}
VARIANTS = ("full", "quick", "smoke")


# What every task's smoke variant shares (seconds: a tiny model, two steps, one eval batch);
# a task's own SMOKE dict adds its data and may override any of these.
SMOKE_COMMON = {
    "model.num_layers": 2, "model.d_model": 16, "model.num_heads": 2, "model.d_ff": 32,
    "model.radius": 3, "model.chunk_size": 8, "model.s4.d_state": 4, "batch_size": 2,
    "num_train_steps": 2, "eval_every": 0, "checkpoint_every": 0, "log_every": 1,
    "max_eval_batches": 1, "progress_bar": False, "async_checkpoints": False,
}
# What the quick variants share (a 2-layer, 64-wide model); tasks set data, steps and the rest.
QUICK_COMMON = {
    "model.num_layers": 2, "model.d_model": 64, "model.num_heads": 4, "model.d_ff": 128,
    "model.dropout": 0.0,
}


def parse_arg(arg):
    """'model=s4,quick' -> ('s4', 'quick')."""
    family, variant = "spade", "full"
    for part in filter(None, (arg or "").split(",")):
        key, _, value = part.partition("=")
        if key == "model" and value:
            family = value
        elif not value and key in VARIANTS:
            variant = key
        else:
            raise ConfigError(f"config argument {part!r} not understood: use model=<family> "
                             f"({', '.join(FAMILIES)}) and/or a variant ({', '.join(VARIANTS[1:])})")
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; expected one of {list(FAMILIES)}")
    return family, variant


def set_dotted(config, values: dict):
    """config['a.b.c'] = v for each dotted key (the key must exist, so typos are caught: a
    ConfigError naming the closest fields)."""
    for key, value in values.items():
        check_dotted(config, key)
        target = config
        *parents, last = key.split(".")
        for name in parents:
            target = target[name]
        try:
            target[last] = value
        except TypeError as e:  # a locked ConfigDict's field of another type
            raise ConfigError(f"config.{key}: {e}") from None
    return config


def build(task: str, arg, *, full: dict, quick: dict, smoke: dict,
          quick_by_family: dict | None = None) -> ml_collections.ConfigDict:
    """The config of `task` for the family and variant named in `arg`.

    quick_by_family: {family: overrides} applied on top of `quick` for that family's quick
      variant (e.g. fewer steps for the transformer, whose full attention is slower on CPU, to
      keep every quick run within its 10-minute budget).
    """
    family, variant = parse_arg(arg)
    spec = TASKS[task]
    c = default_config()
    c.task = task
    c.model_name = family
    c.variant = variant
    c.data_dir = ""  # the unpacked LRA release; "" in quick/smoke: generated into the cache
    c.data_cache_dir = ""  # the tokenised-split cache; "": <data_dir>/.lra_cache (read-only data)
    c.data_options = ml_collections.ConfigDict()  # reader options (max_length, difficulty, ...)
    c.generate = ml_collections.ConfigDict()  # generator options for quick/smoke defaults
    c.model.update(vocab_size=spec.vocab_size, num_classes=spec.num_classes,
                   max_len=spec.max_length, pad_id=spec.pad_id,
                   head="retrieval" if spec.dual else "classify")
    c.model.update(FAMILIES[family])
    unknown = sorted(set(quick_by_family or {}) - set(FAMILIES))
    if unknown:
        raise ConfigError(f"{task}: quick_by_family names unknown families {unknown}")
    layers = {"full": (full,),
              "quick": (full, QUICK_COMMON, quick, (quick_by_family or {}).get(family, {})),
              "smoke": (full, SMOKE_COMMON, smoke)}[variant]
    for values in layers:
        generate = values.get("generate")
        options = values.get("data_options")
        set_dotted(c, {k: v for k, v in values.items() if k not in ("generate", "data_options")})
        if generate is not None:
            c.generate = ml_collections.ConfigDict(generate)
        if options is not None:
            c.data_options = ml_collections.ConfigDict(options)
    if "max_length" in c.data_options:
        c.model.max_len = c.data_options.max_length
    if "image_size" in c.data_options:
        c.model.max_len = c.data_options.image_size ** 2
    return c
