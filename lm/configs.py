"""Building WikiText LM configs: model families, variants and dotted overrides.

`configs/wikitext103.py` calls `build(arg, full=..., quick=..., smoke=...)`; the config-path
argument picks the family and the variant:

    configs/wikitext103.py                        the SPADE recipe (real WikiText-103)
    configs/wikitext103.py:quick                  CPU run on the embedded stand-in (<= 10 min)
    configs/wikitext103.py:model=transformer,quick
    configs/wikitext103.py:smoke                  seconds, for tests

Families: spade (S4 beside causal window attention in layer 0, window attention above),
transformer (full causal attention), local (window attention only), s4 (S4 blocks only).
"""
import ml_collections

from spade_jax.errors import ConfigError
from spade_jax.train.defaults import default_config

FAMILIES = {
    "spade": dict(family="spade", local_attention="window"),
    "transformer": dict(family="transformer"),
    "local": dict(family="local", local_attention="window"),
    "s4": dict(family="s4"),
}
VARIANTS = ("full", "quick", "smoke")


def parse_arg(arg) -> tuple:
    """'model=s4,quick' -> ('s4', 'quick')."""
    family, variant = "spade", "full"
    for part in (arg or "").split(","):
        name, _, value = part.partition("=")
        if name == "model":
            if value not in FAMILIES:
                raise ConfigError(f"unknown model family {value!r}; expected one of "
                                 f"{list(FAMILIES)}")
            family = value
        elif part in VARIANTS[1:]:
            variant = part
        elif part:
            raise ConfigError(f"config argument {part!r} not understood: expected model=<family> "
                             f"with a family in {list(FAMILIES)}, and/or one of {VARIANTS[1:]}")
    return family, variant


def build(arg, *, full: dict, quick: dict, smoke: dict) -> ml_collections.ConfigDict:
    """The config for the family and variant named in `arg`: the engine's defaults, the LM
    fields, then `full`, then (quick / smoke) the variant's changes, as dotted keys."""
    family, variant = parse_arg(arg)
    c = default_config()
    c.task = "wikitext103"
    c.model_name, c.variant = family, variant
    c.data_dir = ""  # wiki.{train,valid,test}.tokens; "" in quick / smoke: the embedded stand-in
    c.data = ml_collections.ConfigDict(dict(
        tokenizer="word",  # 'word' (vocabulary of the training split) | 'byte' (UTF-8)
        suffix="tokens",  # wiki.<split>.<suffix>: 'tokens', or 'raw' for the raw variant
        unknown="error",  # a valid / test token missing from the vocabulary: 'error' | 'unk'
        cache_dir=""))  # "": <cache root>/lm
    c.seq_len = 3072  # tokens per training block
    c.eval_context = 2560  # evaluation: tokens of context before each scored window
    c.model.update(head="lm", causal=True, final_norm=False, pad_id=0, vocab_size=0)
    c.model.max_len = c.get_ref("seq_len")
    c.model.update(FAMILIES[family])
    c.lock()  # a misspelt key below is an error, not a new field
    for values in {"full": (full,), "quick": (full, quick), "smoke": (full, smoke)}[variant]:
        c.update_from_flattened_dict(values)
    return c
