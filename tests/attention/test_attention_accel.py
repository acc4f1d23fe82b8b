"""Tests for spade_jax.model.attention_accel and model.attention_impl.

The splash kernel runs in the Pallas interpreter on the CPU and must equal the blocked kernels of
spade_jax.model.attention (themselves checked against a dense reference in test_attention.py): outputs
and gradients, with padding masks, lengths that are not a multiple of the splash block, and rows
that see no key. cuDNN cannot run here: its refusal and its argument construction are checked
(the arguments through jax.nn.dot_product_attention's XLA path).
"""
import importlib.util
import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spade_jax.model import attention as att
from spade_jax.model import attention_accel as accel
from spade_jax.model import families, models
from spade_jax.model.config import ModelConfig, default_model_config

H, D = 2, 16


def _qkv(batch, length, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    return tuple(jax.random.normal(key, (batch, length, H, D)) for key in keys)


def _blocked(kind, radius, chunk, causal):
    if kind == "window":
        return partial(att.local_attention, radius=radius, causal=causal)
    if kind == "chunk":
        return partial(att.chunk_attention, chunk=chunk, causal=causal)
    return partial(att.full_attention, causal=causal)


def _splash_interpreted(monkeypatch):
    monkeypatch.setattr(accel, "SPLASH_INTERPRET", True)


# (kind, causal, length, radius, chunk, real tokens per row or None for no mask)
CASES = [
    # 200 is not a multiple of the 128 block; in the second row the queries from 101 on see no key.
    ("window", False, 200, 40, None, (200, 60)),
    ("window", True, 200, 40, None, (200, 60)),
    # The window spans three blocks of 128 (long: the interpreter takes ~15 s per case on CI).
    pytest.param("window", False, 256, 130, None, None, marks=pytest.mark.long),
    pytest.param("full", True, 200, None, None, (200, 150), marks=pytest.mark.long),
    ("chunk", False, 200, None, 64, (200, 150)),
]


@pytest.mark.slow
@pytest.mark.parametrize("kind,causal,length,radius,chunk,real", CASES)
def test_splash_interpreted_matches_blocked(monkeypatch, kind, causal, length, radius, chunk,
                                            real):
    _splash_interpreted(monkeypatch)
    batch = 2 if real else 1
    q, k, v = _qkv(batch, length)
    mask = None if real is None else jnp.arange(length)[None, :] < jnp.array(real)[:, None]
    cfg = ModelConfig(radius=radius or 1, chunk_size=chunk or 1, causal=causal)
    spec = families.mixer(kind).attention  # the kind's window and chunks, from the registry
    splash_fn = lambda q, k, v: accel.attend("splash", spec.window(cfg), q, k, v,
                                             chunk=spec.chunk(cfg), mask=mask)
    blocked_fn = lambda q, k, v: _blocked(kind, radius, chunk, causal)(q, k, v, mask=mask)

    out, expected = jax.jit(splash_fn)(q, k, v), blocked_fn(q, k, v)
    np.testing.assert_allclose(out, expected, atol=2e-5, rtol=1e-5)
    if kind == "window" and real is not None:
        empty = np.asarray(~accel.has_visible_key(mask, spec.window(cfg)))
        assert empty.any()  # padded queries beyond the radius: exactly zero, as blocked gives
        assert np.all(np.asarray(out)[empty] == 0.0)

    # A cotangent that is nonzero everywhere, so every gradient path is exercised.
    dout = jax.random.normal(jax.random.PRNGKey(1), q.shape)
    loss = lambda fn: lambda q, k, v: jnp.sum(fn(q, k, v) * dout)
    grads = jax.jit(jax.grad(loss(splash_fn), argnums=(0, 1, 2)))(q, k, v)
    expected_grads = jax.grad(loss(blocked_fn), argnums=(0, 1, 2))(q, k, v)
    for name, g, e in zip("qkv", grads, expected_grads):
        assert np.all(np.isfinite(g)), name
        np.testing.assert_allclose(g, e, atol=5e-5, rtol=1e-4, err_msg=f"d{name}")


@pytest.mark.slow
def test_splash_is_split_over_the_batch_and_heads_of_a_mesh(monkeypatch):
    """Under a 2 x 2 x 2 mesh (spade_jax.train.sharding.model_context) splash runs inside
    jax.shard_map, each device on its examples and heads (a Mosaic kernel cannot be partitioned
    by XLA): the kernel sees a quarter of the batch and half of the heads, and the outputs and
    gradients equal the unsharded call's."""
    from spade_jax.train import sharding
    _splash_interpreted(monkeypatch)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    q, k, v = _qkv(4, 128)
    mask = jnp.arange(128)[None, :] < jnp.array([128, 90, 128, 40])[:, None]
    seen = []
    local = accel._splash_local
    monkeypatch.setattr(accel, "_splash_local",
                        lambda q, *a, **kw: seen.append(q.shape) or local(q, *a, **kw))
    fn = lambda q, k, v: accel.attend("splash", (20, 20), q, k, v, mask=mask)
    loss = lambda q, k, v: jnp.sum(fn(q, k, v) ** 2)
    with sharding.model_context(mesh, sharding.DEFAULT_RULES):
        out, grads = jax.jit(lambda *x: (fn(*x), jax.grad(loss, argnums=(0, 1, 2))(*x)))(q, k, v)
    assert seen and all(shape == (1, 128, 1, D) for shape in seen), seen
    seen.clear()
    expected, expected_grads = fn(q, k, v), jax.grad(loss, argnums=(0, 1, 2))(q, k, v)
    assert seen == [(4, 128, H, D)] * len(seen) and seen  # no mesh set: one call, whole
    np.testing.assert_allclose(out, expected, atol=1e-6)
    for g, e in zip(grads, expected_grads):
        np.testing.assert_allclose(g, e, atol=1e-5)


def test_has_visible_key_matches_a_dense_count():
    rng = np.random.default_rng(0)
    valid = rng.random((3, 37)) < 0.3
    i, j = np.arange(37)[:, None], np.arange(37)[None, :]
    for window in ((4, 4), (4, 0), (None, 0), (None, None), (0, 9)):
        left, right = window
        inside = ((left is None) | (j >= i - (left or 0))) & ((right is None) | (j <= i + (right or 0)))
        expected = (inside[None] & valid[:, None, :]).any(-1)
        np.testing.assert_array_equal(accel.has_visible_key(jnp.asarray(valid), window), expected)


def test_splash_refuses_a_backend_without_tpu_unless_interpreted():
    assert jax.default_backend() != "tpu"
    q, k, v = _qkv(1, 128)
    with pytest.raises(RuntimeError, match="attention_impl='splash' needs a TPU .*'cpu'"):
        accel.splash_attention(q, k, v, window=(8, 8))


def test_splash_block_must_be_a_multiple_of_128():
    q, k, v = _qkv(1, 128)
    with pytest.raises(ValueError, match="multiple of 128, got 64"):
        accel.splash_attention(q, k, v, window=(8, 8), block=64, interpret=True)


def test_cudnn_refuses_a_backend_without_gpu():
    q, k, v = (x.astype(jnp.bfloat16) for x in _qkv(1, 64))
    with pytest.raises(RuntimeError, match="attention_impl='cudnn' needs a GPU .*'cpu'"):
        accel.cudnn_attention(q, k, v, window=(8, 0))


def test_cudnn_refuses_a_right_window():
    with pytest.raises(ValueError, match="only a causal"):
        accel.cudnn_arguments(window=(8, 8))


@pytest.mark.parametrize("kind", ["window", "full"])
def test_cudnn_arguments_give_the_blocked_causal_attention(kind):
    """The arguments that go to cuDNN, run through dot_product_attention's XLA path: the window
    and the lengths read from a suffix-padded mask give the blocked kernel's output on every
    real token."""
    length, radius = 40, 5
    q, k, v = _qkv(2, length)
    real = np.array([40, 23])
    mask = jnp.arange(length)[None, :] < jnp.asarray(real)[:, None]
    args = accel.cudnn_arguments(
        window=families.mixer(kind).attention.window(ModelConfig(radius=radius, causal=True)),
        mask=mask)
    assert args["is_causal"] and args["local_window_size"] == ((radius, 0) if kind == "window"
                                                                 else None)
    np.testing.assert_array_equal(args["key_value_seq_lengths"], real)
    out = jax.nn.dot_product_attention(q, k, v, implementation="xla", **args)
    expected = _blocked(kind, radius, None, True)(q, k, v, mask=mask)
    for row, n in enumerate(real):
        np.testing.assert_allclose(out[row, :n], expected[row, :n], atol=1e-5, rtol=1e-5)


def test_cudnn_lengths_stop_at_the_first_padding_token():
    mask = jnp.array([[1, 1, 0, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]], bool)
    args = accel.cudnn_arguments(window=(None, 0), mask=mask)
    np.testing.assert_array_equal(args["query_seq_lengths"], [2, 5, 0])


# ----------------------------------------------------------------------------- model and config

SMALL = dict(vocab_size=20, num_layers=2, d_model=32, num_heads=2, d_ff=64, max_len=200,
             radius=20, chunk_size=64, s4={"d_state": 4, "kernel": "diag"}, dropout=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("family,local_attention,causal", [
    pytest.param("spade", "window", False, marks=pytest.mark.long),  # ~20 s interpreted on CI
    ("local", "chunk", True)])
def test_model_with_splash_matches_blocked(monkeypatch, family, local_attention, causal):
    """The same parameters give the same logits whichever kernel the config selects."""
    _splash_interpreted(monkeypatch)
    fields = dict(SMALL, family=family, local_attention=local_attention, causal=causal,
                  position="none")
    blocked = models.build_model(dict(fields, attention_impl="blocked"))
    splash = models.build_model(dict(fields, attention_impl="splash"))
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 150), 1, 20)
    tokens = tokens.at[1, 90:].set(0)  # padding
    params = blocked.init(jax.random.PRNGKey(1), tokens)
    np.testing.assert_allclose(jax.jit(splash.apply)(params, tokens), blocked.apply(params, tokens),
                               atol=1e-5, rtol=1e-5)


def test_default_config_exposes_attention_impl():
    config = default_model_config()
    assert config.attention_impl == "auto"
    assert accel.resolve("auto", None) == accel.resolve("auto", "window") == "blocked"  # a CPU
    assert accel.resolve("splash", None) == "splash"
    config.attention_impl = "splash"
    config.position = "none"
    assert ModelConfig.from_config(config).attention_impl == "splash"


def _experiment_config(name, arg=None):
    path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_{name}_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def test_experiment_configs_select_the_kernel():
    """`--config.model.attention_impl=...` on an experiment config: checked with the rest."""
    lm = _experiment_config("wikitext103")
    lm.model.vocab_size = 267_735  # set from the data at run time
    lm.model.attention_impl = "cudnn"
    with pytest.raises(ValueError, match="cannot add the relative-position bias"):
        models.build_model(lm.model)  # the registry's check: which layers take the bias
    lm.model.position = "none"
    assert families.check(ModelConfig.from_config(lm.model)).attention_impl == "cudnn"
    text = _experiment_config("text")
    text.model.update(attention_impl="cudnn", position="none")
    with pytest.raises(ValueError, match="needs model.causal=True"):
        ModelConfig.from_config(text.model)
    text.model.attention_impl = "splash"
    assert ModelConfig.from_config(text.model).attention_impl == "splash"


@pytest.mark.parametrize("fields,message", [
    (dict(attention_impl="fused"), r"model.attention_impl must be one of \('blocked', 'auto', "
                                   r"'flash', 'splash', 'cudnn'\), got 'fused'"),
    # The default position is 'relative': its bias cannot go into either kernel.
    (dict(attention_impl="splash"), r"attention_impl='splash' cannot add the relative-position "
                                    r"bias .*\['global', 'window'\].*model.position"),
    (dict(attention_impl="cudnn", family="transformer", causal=True, dtype="bfloat16"),
     r"attention_impl='cudnn' cannot add the relative-position bias .*\['full'\]"),
    (dict(attention_impl="cudnn", position="none", dtype="bfloat16"),
     r"attention_impl='cudnn' needs model.causal=True"),
    (dict(attention_impl="cudnn", position="none", causal=True),
     r"attention_impl='cudnn' needs model.dtype='bfloat16'"),
    (dict(attention_impl="cudnn", position="none", causal=True, dtype="bfloat16", d_model=36,
          num_heads=3), r"multiple of 8 and at most 256 .*got 12"),
])
def test_config_refuses(fields, message):
    with pytest.raises(ValueError, match=message):
        families.check(ModelConfig(**fields))


@pytest.mark.parametrize("fields", [
    dict(attention_impl="splash", position="none"),
    dict(attention_impl="splash", position="learned", family="transformer", causal=True),
    # Chunk attention takes no relative bias, so 'relative' is no obstacle there.
    dict(attention_impl="splash", local_attention="chunk"),
    dict(attention_impl="cudnn", position="none", causal=True, dtype="bfloat16"),
    dict(attention_impl="splash", family="s4"),
])
def test_config_accepts(fields):
    assert families.check(ModelConfig(**fields)).attention_impl == fields["attention_impl"]
