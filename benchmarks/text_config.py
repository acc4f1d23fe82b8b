"""The LRA Text config (configs/text.py), the width every benchmark measures a family at.

A benchmark gets it the way `python -m lra.main --config=configs/text.py:model=<family>` does
(spade_jax.train.config_builder.load: the config file's `get_config(arg)`), and changes fields by
dotted keys with spade_jax.train.config_builder.set_dotted, as `--config.<key>=<value>` does (a typo
is a ConfigError naming the closest fields).
"""
import os

from benchmarks import ROOT
from spade_jax.train import config_builder
from spade_jax.model.config import ModelConfig

TEXT_CONFIG = os.path.join(ROOT, "configs", "text.py")

# Tiny sizes for --quick runs (and the tests): the same model families at a width of 32.
QUICK_MODEL = {"d_model": 32, "num_heads": 2, "d_ff": 64, "num_layers": 2, "radius": 15,
               "chunk_size": 16, "s4.d_state": 8}


def text_config(arg: str = ""):
    """The LRA Text experiment config (configs/text.py's get_config(arg); arg as on the command
    line: 'model=<family>', ',quick', ...), an ml_collections.ConfigDict."""
    return config_builder.load(TEXT_CONFIG, arg)


def text_model(arg: str = "", **changes) -> dict:
    """The Text config's model (see `text_config`) as a dict of ModelConfig fields, with
    `changes` applied (dotted keys for S4: 's4.d_state'), checked by ModelConfig."""
    model = config_builder.set_dotted(text_config(arg).model.to_dict(), changes, "config.model")
    ModelConfig.from_config(model)  # checked here, before any process starts
    return model
