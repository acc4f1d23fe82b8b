"""Model families and heads: build, forward/backward, 16K compile, causality, padding, configs."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from spade_jax.model import families, models
from spade_jax.model.config import ModelConfig, S4Config, default_model_config

FAMILIES = families.model_families()
SMALL = dict(vocab_size=20, d_model=16, num_heads=2, d_ff=32, num_layers=2, radius=3,
             chunk_size=4, max_len=64, dropout=0.0, num_classes=3, s4=S4Config(d_state=4))


def small(**kw):
    return ModelConfig(**{**SMALL, **kw})


def tokens_for(cfg, batch=2, length=24, seed=0, pad_from=None):
    tokens = jax.random.randint(jax.random.PRNGKey(seed), (batch, length), 1, cfg.vocab_size)
    if pad_from is not None:
        tokens = tokens.at[:, pad_from:].set(cfg.pad_id)
    return tokens


def init(cfg, *inputs):
    return jax.jit(models.build_model(cfg).init)(jax.random.PRNGKey(0), *inputs)


def test_layer_kinds_per_family():
    kinds = lambda **kw: families.layer_kinds(small(**kw))  # noqa: E731
    assert kinds(family="spade", num_layers=3) == ("global", "window", "window")
    assert kinds(family="spade", num_layers=3, global_layers=(1,),
                 local_attention="chunk") == ("chunk", "global", "chunk")
    assert kinds(family="transformer") == ("full", "full")
    assert kinds(family="local", local_attention="chunk") == ("chunk", "chunk")
    assert kinds(family="s4") == ("s4", "s4")


def _long(kw):
    return pytest.param(kw, marks=pytest.mark.long)


FAMILY_CASES = [dict(family=f) for f in FAMILIES] + [
    dict(family="spade", local_attention="chunk"),
    _long(dict(family="spade", combine="add")), _long(dict(family="spade", combine="stack")),
    _long(dict(family="spade", norm="post", activation="relu")),
    dict(family="spade", position="learned", pooling="cls"),
    _long(dict(family="s4", s4=S4Config(d_state=4, kernel="diag", mode="scan"))),
    dict(family="spade", s4=S4Config(d_state=4, kernel="diag", mode="chunked", chunk_steps=8)),
]


@pytest.mark.parametrize("kw", FAMILY_CASES, ids=lambda kw: "-".join(map(str, kw.values())))
def test_family_forward_backward(kw):
    cfg = small(**kw)
    tokens = tokens_for(cfg, pad_from=20)
    model = models.build_model(cfg)
    params = init(cfg, tokens)["params"]
    labels = jnp.array([0, 2])

    def loss(p):
        logits = model.apply({"params": p}, tokens)
        assert logits.shape == (2, cfg.num_classes) and logits.dtype == jnp.float32
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(value)
    norms = jax.tree_util.tree_map(lambda g: float(np.linalg.norm(g)), nn.unbox(grads))
    assert all(np.isfinite(n) for n in jax.tree_util.tree_leaves(norms))
    # every parameter receives gradient (nothing built but unused)
    dead = [jax.tree_util.keystr(p) for p, n in jax.tree_util.tree_leaves_with_path(norms) if n == 0]
    assert not dead, dead


def test_combine_modes_differ_in_parameters():
    concat = nn.unbox(init(small(combine="concat"), tokens_for(small())))["params"]
    add = nn.unbox(init(small(combine="add"), tokens_for(small())))["params"]
    mixer = lambda p: p["encoder"]["layer_0"]["mixer"]
    assert mixer(concat)["combine"]["kernel"].shape == (32, 16)
    assert "combine" not in mixer(add) and {"s4", "attention"} <= set(mixer(add))


def _causal_lm(family, **kw):
    return small(family=family, head="lm", causal=True, final_norm=False, **kw)


@pytest.mark.parametrize("family", FAMILIES)
def test_causal_lm_ignores_the_future(family):
    cfg = _causal_lm(family)
    tokens = tokens_for(cfg, length=30)
    variables = init(cfg, tokens)
    apply = jax.jit(models.build_model(cfg).apply)
    logits = apply(variables, tokens)
    assert logits.shape == (2, 30, cfg.vocab_size)
    t = 13
    changed = tokens.at[:, t + 1:].set((tokens[:, t + 1:] + 5) % (cfg.vocab_size - 1) + 1)
    other = apply(variables, changed)
    np.testing.assert_allclose(logits[:, : t + 1], other[:, : t + 1], atol=1e-5)
    assert not np.allclose(logits[:, t + 1:], other[:, t + 1:], atol=1e-5)


@pytest.mark.parametrize("kw", [dict(family=f) for f in FAMILIES] + [
    dict(family="spade", local_attention="chunk"), dict(family="spade", pooling="cls")],
    ids=lambda kw: "-".join(map(str, kw.values())))
def test_padding_does_not_change_predictions(kw):
    cfg = small(**kw)
    tokens = tokens_for(cfg, length=20)
    variables = init(cfg, tokens)
    apply = jax.jit(models.build_model(cfg).apply)
    short = apply(variables, tokens)
    padded = apply(variables, jnp.pad(tokens, ((0, 0), (0, 17)), constant_values=cfg.pad_id))
    np.testing.assert_allclose(short, padded, atol=1e-5)


def test_retrieval_head_shares_the_encoder():
    cfg = small(head="retrieval")
    t1, t2 = tokens_for(cfg, seed=1, pad_from=15), tokens_for(cfg, seed=2, pad_from=10)
    variables = init(cfg, t1, t2)
    apply = jax.jit(models.build_model(cfg).apply)
    logits = apply(variables, t1, t2)
    assert logits.shape == (2, cfg.num_classes)
    assert set(nn.unbox(variables)["params"]) == {"encoder", "mlp", "classifier"}
    assert not np.allclose(logits, apply(variables, t2, t1))  # [e1 - e2] is order-sensitive


def test_lm_ties_embeddings():
    cfg = _causal_lm("spade")
    params = nn.unbox(init(cfg, tokens_for(cfg)))["params"]
    assert "logits" not in params
    untied = nn.unbox(init(dataclasses.replace(cfg, tie_embeddings=False), tokens_for(cfg)))
    assert untied["params"]["logits"]["kernel"].shape == (16, cfg.vocab_size)


def test_every_parameter_has_logical_axis_names():
    for cfg in (small(), small(family="transformer", head="retrieval"), _causal_lm("s4")):
        inputs = (tokens_for(cfg),) * (2 if cfg.head == "retrieval" else 1)
        leaves = jax.tree_util.tree_leaves(init(cfg, *inputs)["params"],
                                           is_leaf=lambda x: isinstance(x, nn.Partitioned))
        assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
        for leaf in leaves:
            assert len(leaf.names) == leaf.value.ndim


@pytest.mark.parametrize("remat", ["all", "dots"])
def test_remat_gives_the_same_gradients(remat):
    cfg = small()
    tokens = tokens_for(cfg)
    params = init(cfg, tokens)["params"]

    def grads(c):
        model = models.build_model(c)
        return jax.jit(jax.grad(lambda p: model.apply({"params": p}, tokens).sum()))(params)

    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                           nn.unbox(grads(cfg)), nn.unbox(grads(dataclasses.replace(cfg, remat=remat))))


def test_bfloat16_compute_keeps_float32_parameters():
    cfg = small(dtype="bfloat16")
    tokens = tokens_for(cfg)
    variables = init(cfg, tokens)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(nn.unbox(variables)))
    logits = jax.jit(models.build_model(cfg).apply)(variables, tokens)
    ref = jax.jit(models.build_model(small()).apply)(variables, tokens)
    assert logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, ref, atol=0.1 * float(jnp.abs(ref).max()) + 0.05)


def test_config_from_configdict_and_errors():
    c = default_model_config()
    c.family = "local"
    c.s4.d_state = 8
    cfg = ModelConfig.from_config(c)
    assert cfg.family == "local" and cfg.s4.d_state == 8 and cfg.global_layers == (0,)
    with pytest.raises(ValueError, match=r"unknown model config field\(s\) \['heads'\]"):
        ModelConfig.from_config(ml_collections.ConfigDict({"heads": 4}))
    with pytest.raises(ValueError, match="divisible by model.num_heads"):
        small(d_model=10, num_heads=4)
    # what depends on the family is checked by the registry (models.build_model calls it)
    with pytest.raises(ValueError, match="model.global_layers"):
        families.check(small(global_layers=(2,)))
    with pytest.raises(ValueError, match="model.global_layers"):
        models.build_model(small(global_layers=(2,)))
    with pytest.raises(ValueError, match="model.family must be one of"):
        families.check(small(family="mega"))
    with pytest.raises(ValueError, match="model.local_attention must be one of"):
        families.check(small(local_attention="dilated"))
    with pytest.raises(ValueError, match="causal"):
        small(head="lm")
    with pytest.raises(ValueError, match="max_len"):
        models.build_model(small()).init(jax.random.PRNGKey(0), tokens_for(small(), length=65))


@pytest.mark.parametrize("family", FAMILIES)
def test_family_jit_compiles_at_16k(family):
    """Every family compiles forward+backward at L = 16384 (small width); all but the quadratic
    transformer also run it."""
    length = 16384
    cfg = small(family=family, max_len=length, radius=63, chunk_size=64)
    model = models.build_model(cfg)
    tokens = tokens_for(cfg, batch=1, length=length)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), tokens[:, :8])["params"]
    step = jax.jit(jax.value_and_grad(lambda p, t: model.apply({"params": p}, t).sum()))
    compiled = step.lower(params, tokens).compile()
    if family != "transformer":
        value, grads = compiled(params, tokens)
        assert np.isfinite(float(value))
        assert np.isfinite(float(optax.tree.norm(nn.unbox(grads))))


def test_explicit_mask_overrides_pad_id():
    """Pixel tasks: value 0 is a real pixel when an all-True mask is passed."""
    cfg = small()
    tokens = tokens_for(cfg, pad_from=12)  # zeros from position 12
    variables = init(cfg, tokens)
    apply = jax.jit(models.build_model(cfg).apply)
    implicit = apply(variables, tokens)
    np.testing.assert_allclose(apply(variables, tokens, tokens != 0), implicit, atol=1e-6)
    all_real = apply(variables, tokens, jnp.ones(tokens.shape, bool))
    assert not np.allclose(all_real, implicit, atol=1e-4)


def test_linear_input_encoder_reads_ids_as_intensities():
    """input_encoder='linear': features of the ids are affine in the id (nearby pixel values
    start nearby), one (1, d) kernel instead of a table; a language model refuses it."""
    cfg = small(input_encoder="linear")
    tokens = tokens_for(cfg)
    params = nn.unbox(init(cfg, tokens))["params"]
    assert params["encoder"]["embed"]["linear"]["kernel"].shape == (1, 16)
    encoder = models.ValueEncoder(cfg)
    ids = jnp.arange(cfg.vocab_size)[None]
    x = jax.jit(encoder.apply)({"params": params["encoder"]["embed"]}, ids)[0]
    np.testing.assert_allclose(x[2:] - x[1:-1], x[1:-1] - x[:-2], atol=1e-5)
    assert not np.allclose(x[1], x[0])
    logits = jax.jit(models.build_model(cfg).apply)({"params": params}, tokens)
    assert logits.shape == (2, cfg.num_classes) and np.isfinite(logits).all()
    with pytest.raises(ValueError, match="model.input_encoder"):
        small(input_encoder="pixels")
    with pytest.raises(ValueError, match="model.input_encoder must be 'embed'"):
        _causal_lm("spade", input_encoder="linear")


def test_stack_combine_is_local_attention_of_the_s4_output_without_inner_norms():
    """combine='stack' (the reference's stacked SPADE layer): mixer(u) = LocalAttn(S4(u)), no
    LayerNorm between or after, with the mixer's own S4 and attention parameters."""
    from spade_jax.model import layers
    cfg = small(family="spade", combine="stack", position="none")
    u = jax.random.normal(jax.random.PRNGKey(1), (2, 24, cfg.d_model))
    mixer = layers.GlobalMixer(cfg, families.local_attention(cfg))
    params = jax.jit(mixer.init)(jax.random.PRNGKey(0), u)["params"]
    assert set(params) == {"s4", "attention"}  # no norm_s4 / norm_attention / combine

    @jax.jit
    def by_parts(params, u):
        s4_out = layers.s4_layer(cfg).apply({"params": params["s4"]}, u)
        return layers.SelfAttention(cfg, families.local_attention(cfg)).apply(
            {"params": params["attention"]}, s4_out)
    np.testing.assert_allclose(jax.jit(mixer.apply)({"params": params}, u), by_parts(params, u),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["lin", "inv"])
def test_model_s4_init_reaches_the_s4_layer(name):
    """model.s4.init='lin' / 'inv' (S4D) initialises the model's S4 state matrix from
    hippo.diag_init, not LegS; the DPLR kernel refuses them."""
    from spade_jax.model.ssm import hippo
    cfg = small(family="s4", num_layers=1, s4=S4Config(d_state=8, kernel="diag", init=name))
    params = init(cfg, tokens_for(cfg))["params"]
    a_im = nn.meta.unbox(params)["encoder"]["layer_0"]["mixer"]["s4"]["A_im"]
    lam, _ = hippo.diag_init(name, 8)
    np.testing.assert_allclose(np.asarray(a_im)[0], lam.imag, rtol=1e-6)
    with pytest.raises(ValueError, match="model.s4.init"):
        small(s4=S4Config(d_state=8, init=name))
