"""The registry of mixers and families (spade_jax.model.families): every registered family builds for
every task's config file and runs; a family registered in one call is usable by the config
files, the models and the FLOP count with no other edit."""
import functools
import glob
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spade_jax.train import config_builder
from spade_jax.model import families, flops, models
from spade_jax.model.config import ModelConfig
from spade_jax.runtime.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LM_CONFIG = os.path.join(ROOT, "configs", "wikitext103.py")
LRA_CONFIGS = sorted(p for p in glob.glob(os.path.join(ROOT, "configs", "*.py")) if p != LM_CONFIG)
LENGTH = 12  # tokens of the test inputs (every task's model takes any length up to max_len)


def _model(path, family):
    """The ModelConfig and model of configs/<task>.py:model=<family>,smoke."""
    config = config_builder.load(path, f"model={family},smoke")
    assert (config.model_name, config.variant) == (family, "smoke")
    if config.model.vocab_size == 0:  # the LM's vocabulary comes from its data
        config.model.vocab_size = 64
    cfg = ModelConfig.from_config(config.model)
    assert families.model_fields(family).items() <= vars(cfg).items()
    return cfg, models.build_model(cfg)


def _inputs(cfg):
    tokens = (jnp.arange(2 * LENGTH, dtype=jnp.int32).reshape(2, LENGTH) % (cfg.vocab_size - 1)) + 1
    return (tokens, tokens[::-1]) if cfg.head == "retrieval" else (tokens,)


def _expected_shape(cfg):
    return (2, LENGTH, cfg.vocab_size) if cfg.head == "lm" else (2, cfg.num_classes)


def _init_and_forward(model, inputs):
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), *inputs)
    return variables, jax.jit(model.apply)(variables, *inputs)


def _check_layers(cfg, params):
    """One block per layer, its mixer's parameters under layer_<i>/mixer."""
    encoder = params["encoder"]
    assert sorted(k for k in encoder if k.startswith("layer_")) == \
        sorted(f"layer_{i}" for i in range(cfg.num_layers))
    assert all("mixer" in encoder[f"layer_{i}"] for i in range(cfg.num_layers))


@pytest.mark.parametrize("path", LRA_CONFIGS + [LM_CONFIG], ids=os.path.basename)
def test_every_family_builds_and_traces_for_every_task(path):
    """Every family the task accepts (LRA: all; LM: lm_families) x the task's smoke config:
    init and forward traced (jax.eval_shape: every module built, every shape checked, nothing
    compiled), and a positive FLOP count."""
    names = families.lm_families() if path == LM_CONFIG else tuple(families.FAMILIES)
    assert names
    for family in names:
        cfg, model = _model(path, family)
        variables, out = jax.eval_shape(functools.partial(_init_and_forward, model), _inputs(cfg))
        assert out.shape == _expected_shape(cfg), (family, out.shape)
        _check_layers(cfg, nn.unbox(variables)["params"])
        assert families.forward_flops(cfg, LENGTH)["per_sequence"] > 0


# Real init and forward of every family (the default run traces every family x task above, and
# tests/models/test_models.py runs each family's forward and backward on its own shapes).
@pytest.mark.long
@pytest.mark.parametrize("path", [os.path.join(ROOT, "configs", "listops.py"), LM_CONFIG],
                         ids=os.path.basename)
def test_every_family_runs_init_and_a_forward(path):
    """The real computation (eager: the small ops are compiled once and shared by the
    families) gives finite outputs of the right shape, the LM's a distribution per token."""
    names = families.lm_families() if path == LM_CONFIG else tuple(families.FAMILIES)
    for family in names:
        cfg, model = _model(path, family)
        _, out = _init_and_forward(model, _inputs(cfg))
        assert out.shape == _expected_shape(cfg) and np.isfinite(out).all(), family
        if cfg.head == "lm":  # log-probabilities (tied adaptive softmax)
            np.testing.assert_allclose(jnp.exp(out).sum(-1), 1.0, rtol=1e-4)


def test_lm_families_are_those_whose_mixers_all_decode():
    for name in families.FAMILIES:
        cfg = ModelConfig(**families.model_fields(name), causal=True)
        decodes = all(families.mixer(kind).decodes for kind in families.layer_kinds(cfg))
        assert (name in families.lm_families()) == decodes
    assert {"spade", "transformer", "local", "s4"} <= set(families.lm_families())


class MeanMixer(nn.Module):
    """A toy mixer (not decodable): each token gets the mean of the tokens up to it, then a
    Linear layer. u (B, L, d) -> (B, L, d)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, u, mask=None, bias=None, decode: bool = False):
        if mask is not None:
            u = u * mask[..., None]
        means = jnp.cumsum(u, axis=1) / jnp.arange(1, u.shape[1] + 1)[None, :, None]
        return nn.Dense(self.config.d_model, name="out")(means)


def _mean_flops(cfg, length):
    return 2 * length * cfg.d_model * cfg.d_model, 0.0


@pytest.fixture
def registry(monkeypatch):
    """The registry, restored after the test."""
    monkeypatch.setattr(families, "MIXERS", dict(families.MIXERS))
    monkeypatch.setattr(families, "FAMILIES", dict(families.FAMILIES))
    return families


def test_a_family_of_registered_mixers_is_one_call(registry):
    """S4 in layer 0, full attention above: one register() call, then the LRA and LM configs,
    the model, its layer kinds and its FLOPs follow."""
    registry.register(registry.Family(
        "s4_then_full", lambda cfg: ("s4",) + ("full",) * (cfg.num_layers - 1)))
    assert "s4_then_full" in registry.lm_families()  # S4 and full attention both decode
    for path in (os.path.join(ROOT, "configs", "text.py"), LM_CONFIG):
        cfg, model = _model(path, "s4_then_full")
        assert registry.layer_kinds(cfg) == ("s4", "full")
        assert registry.relative_bias_kinds(cfg) == {"full": "dense"}
        variables, out = jax.eval_shape(functools.partial(_init_and_forward, model), _inputs(cfg))
        assert out.shape == _expected_shape(cfg)
        mixers = nn.unbox(variables)["params"]["encoder"]
        assert set(mixers["layer_0"]["mixer"]) == {"s4", "out"}
        assert set(mixers["layer_1"]["mixer"]) == {"query", "key", "value", "out"}
    hybrid = ModelConfig(family="s4_then_full", num_layers=2)
    mixed = registry.forward_flops(hybrid, 64)
    s4 = registry.forward_flops(ModelConfig(family="s4", num_layers=2), 64)
    s4_seq, s4_fixed = flops.s4_mixer_flops(hybrid, 64)
    assert mixed["per_sequence"] == pytest.approx(
        s4["per_sequence"] - s4_seq
        + flops.attention_flops(hybrid, registry.mixer("full").attention, 64), rel=1e-12)
    assert mixed["per_step_fixed"] == pytest.approx(s4["per_step_fixed"] - s4_fixed, rel=1e-12)


def test_a_new_mixer_and_family_are_two_calls(registry):
    """A new mixer (its module and one register() call) and a family using it (one call): the
    LRA configs accept it, the model runs it, the FLOP count uses its formula, and the LM, whose
    families must decode, refuses it."""
    with pytest.raises(ConfigError, match="model.family"):
        registry.check(ModelConfig(family="toy"))
    with pytest.raises(ConfigError, match="unknown model family 'toy'.*spade_chunk"):
        config_builder.load(LRA_CONFIGS[0], "model=toy")
    registry.register(registry.Mixer("mean", lambda cfg, name: MeanMixer(cfg, name=name),
                                     _mean_flops))
    registry.register(registry.Family(
        "toy", lambda cfg: ("s4",) + ("mean",) * (cfg.num_layers - 1)))
    cfg, model = _model(os.path.join(ROOT, "configs", "listops.py"), "toy")
    assert cfg.family == "toy" and registry.layer_kinds(cfg) == ("s4", "mean")
    variables, out = _init_and_forward(model, _inputs(cfg))
    assert out.shape == _expected_shape(cfg) and np.isfinite(out).all()
    assert set(nn.unbox(variables)["params"]["encoder"]["layer_1"]["mixer"]) == {"out"}

    s4 = ModelConfig(**{**vars(cfg), "family": "s4"})
    toy, base = registry.forward_flops(cfg, 100), registry.forward_flops(s4, 100)
    s4_seq, s4_fixed = flops.s4_mixer_flops(cfg, 100)
    assert toy["per_sequence"] == pytest.approx(
        base["per_sequence"] - s4_seq + _mean_flops(cfg, 100)[0], rel=1e-12)
    assert toy["per_step_fixed"] == pytest.approx(base["per_step_fixed"] - s4_fixed, rel=1e-12)

    assert "toy" not in registry.lm_families()
    with pytest.raises(ConfigError, match="unknown model family 'toy'"):
        config_builder.load(LM_CONFIG, "model=toy,smoke")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.Family("toy", lambda cfg: ("mean",) * cfg.num_layers))
