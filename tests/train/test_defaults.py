"""The engine's config schema (spade_jax.train.defaults): default_config() is the dataclasses'
defaults, and validate() names the field of every bad value before anything is built."""
import dataclasses

import pytest

from spade_jax.train import sharding
from spade_jax.runtime.errors import ConfigError
from spade_jax.train import defaults


def test_the_defaults_are_the_schema_and_pass():
    config = defaults.default_config()
    engine = defaults.validate(config, 8, 1)
    assert engine == dataclasses.replace(defaults.Engine(), profile_steps=())
    assert config.optimizer.to_dict() == dataclasses.asdict(defaults.Optimizer())
    assert engine.eval_batch == config.batch_size
    assert engine.logical_axis_rules[0] == ("activation_batch", ("data", "fsdp"))


@pytest.mark.parametrize("field, value, named", [
    ("num_train_steps", 0, "config.num_train_steps must be >= 1"),
    ("batch_size", 0, "config.batch_size must be >= 1"),
    ("seed", 2**32, r"config.seed must be in \[0, 2\*\*32\)"),
    ("max_skipped_fraction", 1.5, "config.max_skipped_fraction must be in"),
    ("max_wall_s", -1.0, "config.max_wall_s must be >= 0"),
    ("optimizer.name", "lion", "config.optimizer.name must be one of"),
    ("optimizer.schedule", "step", "config.optimizer.schedule must be one of"),
    ("optimizer.warmup_steps", -1, "config.optimizer.warmup_steps must be >= 0"),
    ("optimizer.b2", 1.5, "config.optimizer.b2 must be in"),
    ("mesh.data", 3, "config.mesh"),
    ("mesh.tensor", 0, "config.mesh sizes must be positive"),
    ("profile_steps", (5,), "config.profile_steps"),
    ("eval_batch_size", 12, r"config.eval_batch_size \(12\)"),
])
def test_a_bad_value_names_its_field(field, value, named):
    config = defaults.default_config()
    section, _, name = field.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(ConfigError, match=named):
        defaults.validate(config, 8, 1)


def test_unknown_section_fields_and_bad_combinations():
    config = defaults.default_config()
    config.optimizer.learning_rte = 1.0
    with pytest.raises(ConfigError, match=r"config.optimizer field\(s\) \['learning_rte'\]"):
        defaults.validate(config, 8, 1)
    config = defaults.default_config()
    config.optimizer.name = "adam"
    with pytest.raises(ConfigError, match="'adam' has no weight decay"):
        defaults.validate(config, 8, 1)
    config.optimizer.weight_decay = 0.0
    assert defaults.validate(config, 8, 1).optimizer.name == "adam"
    config = defaults.default_config()
    config.logical_axis_rules = [["activation_batch", "pipeline"]]
    with pytest.raises(ConfigError, match="config.logical_axis_rules maps .* unknown mesh axes"):
        defaults.validate(config, 8, 1)
    config.logical_axis_rules = [["batch", "data"]]  # the name before activations had their own
    with pytest.raises(ConfigError, match="logical axis 'batch', which no array has"):
        defaults.validate(config, 8, 1)
    config.logical_axis_rules = [list(rule) for rule in sharding.DEFAULT_RULES]
    del config["show_steps"]
    with pytest.raises(ConfigError, match="no field config.show_steps"):
        defaults.validate(config, 8, 1)
