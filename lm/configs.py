"""WikiText LM configs: what the language-modelling task adds to the shared builder
(spade_jax.train.config_builder).

`configs/wikitext103.py` calls `build(arg, paper=..., quick=..., smoke=...)`; the config-path
argument picks the family and the variant:

    configs/wikitext103.py                        the SPADE recipe (real WikiText-103)
    configs/wikitext103.py:quick                  CPU run on the embedded stand-in (<= 10 min)
    configs/wikitext103.py:model=transformer,quick
    configs/wikitext103.py:smoke                  seconds, for tests

Families: those of spade_jax.model.families whose every layer decodes causally (`lm_families()`):
spade (S4 beside causal window attention in layer 0, window attention above), spade_chunk
(causal chunk attention instead of the window), transformer (full causal attention), local
(window attention only), s4 (S4 blocks only).
"""
import ml_collections

from lm import task  # noqa: F401  (registers the LM task with spade_jax.train.job)
from spade_jax.train import config_builder
from spade_jax.model import families


def parse_arg(arg) -> tuple:
    """'model=s4,quick' -> ('s4', 'quick') (spade_jax.train.config_builder.parse_arg over the LM
    families)."""
    return config_builder.parse_arg(arg, families.lm_families())


def build(arg, *, paper: dict, quick: dict, smoke: dict) -> ml_collections.ConfigDict:
    """The config for the family and variant named in `arg`: the engine's defaults, the LM
    fields, then `paper`, then (quick / smoke) the variant's changes, as dotted keys."""
    return config_builder.build("wikitext103", arg, families=families.lm_families(),
                                task_fields=_task_fields, paper=paper, quick=quick, smoke=smoke)


def _task_fields(c: ml_collections.ConfigDict) -> None:
    """The LM's data fields, block and context lengths and the causal LM head; then the config
    is locked (a misspelt key in a layer is an error, not a new field)."""
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
    c.lock()
