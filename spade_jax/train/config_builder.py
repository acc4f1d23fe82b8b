"""Experiment configs, big_vision style: the one builder that lra.configs and lm.configs share.

A config file (configs/<task>.py) holds its hyperparameters as dicts of dotted keys (PAPER, QUICK,
SMOKE) and its `get_config(arg)` calls its task's builder (lra.configs.build, lm.configs.build),
which calls `build` here. The argument after the file's ':' picks the model family and the
variant, comma-separated:

    configs/listops.py                       the paper-scale run (family spade, variant paper)
    configs/listops.py:quick                 a CPU run
    configs/text.py:model=transformer,quick  another family (spade_jax.model.families), quick
    configs/pathx.py:smoke                   seconds, for tests

A config is built in layers: the engine's defaults (spade_jax.train.defaults), the task's fields
(`task_fields`), the family's model fields (spade_jax.model.families.model_fields), then `paper`; the
quick variant applies on top of `paper` the task kind's shared quick dict, the file's `quick` and
its per-family quick dict; the smoke variant the shared smoke dict and the file's `smoke`. Every
layer goes through `set_dotted`, the one way to change a field by name: the key must name an
existing field (a typo is a ConfigError naming the closest fields) and a dict value replaces a
whole section (LRA's data_options, generate).
"""
import importlib.util
import os
from typing import Callable, Optional, Sequence

import ml_collections
from ml_collections.config_flags import config_path

from spade_jax.model import families as registry
from spade_jax.runtime.errors import ConfigError, PathError, check_dotted
from spade_jax.train.defaults import default_config

VARIANTS = ("paper", "quick", "smoke")


def _usage(families: Sequence[str]) -> str:
    return (f"expected model=<family> with a family in {list(families)} and/or a variant "
            f"({', '.join(VARIANTS[1:])}), comma-separated after the config file's ':', e.g. "
            f"--config=configs/<task>.py:model=s4,quick")


def parse_arg(arg: Optional[str], families: Sequence[str]) -> tuple:
    """'model=s4,quick' -> ('s4', 'quick'); the defaults are ('spade', 'paper'). `families`: the
    names this task accepts. A ConfigError names the part not understood, or the family."""
    family, variant = "spade", "paper"
    for part in filter(None, (arg or "").split(",")):
        key, equals, value = part.partition("=")
        if key == "model" and value:
            family = value
        elif not equals and key in VARIANTS:
            variant = key
        else:
            raise ConfigError(f"config argument {part!r} not understood: {_usage(families)}")
    if family not in families:
        raise ConfigError(f"unknown model family {family!r}: {_usage(families)}")
    return family, variant


def set_dotted(config, values: dict, prefix: str = "config"):
    """config[<dotted key>] = value for each of `values` ({'model.s4.d_state': 4}), on a
    ConfigDict or a dict, as `--config.<key>=<value>` does. The key must name an existing field
    (else a ConfigError naming `prefix`.<key> and the closest fields); a value of another type
    than a ConfigDict's field is a ConfigError too; a dict value replaces a whole section.
    Returns config."""
    for key, value in values.items():
        check_dotted(config, key, prefix)
        try:
            config_path.set_value(key, config, value)
        except TypeError as e:  # a ConfigDict's field of another type
            raise ConfigError(f"{prefix}.{key}: {e}") from None
    return config


def build(task: str, arg: Optional[str], *, families: Sequence[str],
          task_fields: Callable[[ml_collections.ConfigDict], None], paper: dict, quick: dict,
          smoke: dict, quick_common: Optional[dict] = None, smoke_common: Optional[dict] = None,
          paper_by_family: Optional[dict] = None,
          quick_by_family: Optional[dict] = None) -> ml_collections.ConfigDict:
    """The config of `task` for the family and variant that `arg` names (see the module
    docstring for the layers).

    families: the family names the task accepts (spade_jax.model.families).
    task_fields(config): adds and sets what the task needs beyond the engine's defaults (data
      fields, the model's head, vocabulary, length), in place.
    paper, quick, smoke: the config file's dotted-key dicts; quick_common, smoke_common: what every
      file of the task kind shares (applied before the file's quick / smoke).
    paper_by_family: {family: dotted-key dict} applied after `paper` in that family's paper
      variant only (a baseline's own published recipe; quick and smoke derive from `paper`).
    quick_by_family: {family: dotted-key dict} applied last in that family's quick variant.
    """
    family, variant = parse_arg(arg, families)
    for name, by_family in (("paper_by_family", paper_by_family),
                            ("quick_by_family", quick_by_family)):
        unknown = sorted(set(by_family or {}) - set(families))
        if unknown:
            raise ConfigError(f"{task}: {name} names unknown families {unknown}; "
                              f"expected some of {list(families)}")
    config = default_config()
    config.task, config.model_name, config.variant = task, family, variant
    task_fields(config)
    set_dotted(config, {f"model.{k}": v for k, v in registry.model_fields(family).items()})
    layers = {"paper": (paper, (paper_by_family or {}).get(family)),
              "quick": (paper, quick_common, quick, (quick_by_family or {}).get(family)),
              "smoke": (paper, smoke_common, smoke)}[variant]
    for values in layers:
        set_dotted(config, values or {})
    return config


def load(path: str, arg: Optional[str] = None) -> ml_collections.ConfigDict:
    """The config that `--config=<path>:<arg>` gives: the config file's get_config(arg)."""
    if not os.path.isfile(path):
        raise PathError(f"no config file {path}")
    name = "_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)
