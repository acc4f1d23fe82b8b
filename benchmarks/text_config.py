"""The LRA Text config (configs/text.py), the width every benchmark measures a family at.

A benchmark gets it the way `python -m lra.main --config=configs/text.py:model=<family>` does:
through the config file's `get_config(arg)`, and changes fields by dotted keys as
`--config.<key>=<value>` does (ml_collections' config_path), the key checked first so that a
typo is a ConfigError naming the closest fields.
"""
import importlib.util
import os

from ml_collections.config_flags import config_path

from benchmarks import ROOT
from spade_jax.config import ModelConfig
from spade_jax.errors import ConfigError, check_dotted

TEXT_CONFIG = os.path.join(ROOT, "configs", "text.py")

# Tiny sizes for --quick runs (and the tests): the same model families at a width of 32.
QUICK_MODEL = {"d_model": 32, "num_heads": 2, "d_ff": 64, "num_layers": 2, "radius": 15,
               "chunk_size": 16, "s4.d_state": 8}


def text_config(arg: str = ""):
    """The LRA Text experiment config (configs/text.py's get_config(arg); arg as on the command
    line: 'model=<family>', ',quick', ...), an ml_collections.ConfigDict."""
    spec = importlib.util.spec_from_file_location("_text_config", TEXT_CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def set_fields(config, changes: dict, prefix: str = "config"):
    """config[<dotted key>] = value for each of `changes` ({'model.s4.kernel': 'diag'}), on a
    ConfigDict or a dict; an unknown key, or a value of another type than a ConfigDict's field,
    is a ConfigError naming `prefix`.<key>. Returns config."""
    for key, value in changes.items():
        check_dotted(config, key, prefix)
        try:
            config_path.set_value(key, config, value)
        except TypeError as e:  # a ConfigDict's field of another type
            raise ConfigError(f"{prefix}.{key}: {e}") from None
    return config


def text_model(arg: str = "", **changes) -> dict:
    """The Text config's model (see `text_config`) as a dict of ModelConfig fields, with
    `changes` applied (dotted keys for S4: 's4.d_state'), checked by ModelConfig."""
    model = set_fields(text_config(arg).model.to_dict(), changes, "config.model")
    ModelConfig.from_config(model)  # checked here, before any process starts
    return model
