"""S4Layer(mode='chunked'): equal to 'fft' and 'scan' (outputs and gradients), masks, config."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spade_jax.model.config import ModelConfig, S4Config
from spade_jax.runtime.errors import ConfigError
from spade_jax.model.ssm import S4Layer

H, N = 4, 8


def _layers(bidirectional, chunk_size, discretization="zoh"):
    kw = dict(d_model=H, d_state=N, kernel="diag", bidirectional=bidirectional,
              discretization=discretization)
    return {mode: S4Layer(mode=mode, chunk_size=chunk_size, **kw)
            for mode in ("fft", "scan", "chunked")}


def _inputs(length, batch=2):
    return jax.random.normal(jax.random.PRNGKey(1), (batch, length, H))


# (length, chunk): several chunks, a ragged last chunk, one short chunk (L < T), T = 1; the
# discretisation only changes the kernel's (A_bar, B_bar), so bilinear takes the ragged case.
CASES = [("zoh", 64, 16), ("zoh", 37, 8), ("zoh", 5, 16), ("zoh", 12, 1), ("bilinear", 37, 8)]


@pytest.mark.parametrize("discretization,length,chunk", CASES)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_chunked_equals_fft_and_scan(length, chunk, bidirectional, discretization):
    layers = _layers(bidirectional, chunk, discretization)
    u = _inputs(length)
    params = jax.jit(layers["fft"].init)(jax.random.PRNGKey(0), u)
    out = {mode: jax.jit(layer.apply)(params, u) for mode, layer in layers.items()}
    scale = float(jnp.abs(out["fft"]).max())
    np.testing.assert_allclose(out["chunked"], out["fft"], atol=1e-5 * scale)
    np.testing.assert_allclose(out["chunked"], out["scan"], atol=1e-5 * scale)


@pytest.mark.parametrize("bidirectional", [pytest.param(False, marks=pytest.mark.long), True])
def test_chunked_gradients_equal_fft(bidirectional):
    layers = _layers(bidirectional, chunk_size=8)
    u = _inputs(37)
    params = jax.jit(layers["fft"].init)(jax.random.PRNGKey(0), u)

    def grads(layer):
        loss = lambda p, x: 0.5 * jnp.sum(layer.apply(p, x) ** 2)  # noqa: E731
        return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, u)

    want, got = grads(layers["fft"]), grads(layers["chunked"])
    for path, g in jax.tree_util.tree_leaves_with_path(got):
        w = dict(jax.tree_util.tree_leaves_with_path(want))[path]
        np.testing.assert_allclose(g, w, atol=1e-4 * float(jnp.abs(w).max()) + 1e-7,
                                   err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_chunked_masks_behave_as_fft(bidirectional):
    length, real = 37, 21
    layers = _layers(bidirectional, chunk_size=8)
    u = _inputs(length)
    params = jax.jit(layers["fft"].init)(jax.random.PRNGKey(0), u)
    apply = {mode: jax.jit(layers[mode].apply) for mode in ("fft", "chunked")}
    mask = jnp.broadcast_to(jnp.arange(length)[None, :] < jnp.array([[real], [length]]),
                            (2, length))
    garbage = jnp.where(mask[..., None], u, 1e3)
    chunked = apply["chunked"](params, garbage, mask)
    np.testing.assert_allclose(chunked, apply["fft"](params, garbage, mask),
                               atol=1e-5 * float(jnp.abs(chunked).max()))
    unpadded = apply["chunked"](params, u[:1, :real])
    np.testing.assert_allclose(chunked[:1, :real], unpadded, atol=1e-4)


def test_chunked_causal_layer_ignores_the_future():
    layer = _layers(False, chunk_size=8)["chunked"]
    u = _inputs(37)
    params = layer.init(jax.random.PRNGKey(0), u)
    t = 20
    changed = u.at[:, t + 1:].set(jax.random.normal(jax.random.PRNGKey(7), u[:, t + 1:].shape))
    a, b = layer.apply(params, u), layer.apply(params, changed)
    np.testing.assert_allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-5)
    assert not np.allclose(a[:, t + 1:], b[:, t + 1:])


@pytest.mark.parametrize("kw,match", [
    (dict(kernel="dplr", mode="chunked"), "kernel='diag'"),
    (dict(kernel="diag", mode="chunked", chunk_size=0), "chunk_size"),
])
def test_layer_refuses_bad_chunked_options(kw, match):
    with pytest.raises(ValueError, match=match):
        S4Layer(d_model=H, d_state=N, **kw).init(jax.random.PRNGKey(0), _inputs(8))


def test_config_takes_chunked_for_diag_only():
    cfg = ModelConfig(family="s4", s4=S4Config(kernel="diag", mode="chunked", chunk_steps=32))
    assert cfg.s4.mode == "chunked"
    with pytest.raises(ConfigError, match="model.s4.mode"):
        ModelConfig(family="s4", s4=S4Config(kernel="dplr", mode="chunked"))
    with pytest.raises(ConfigError, match="model.s4.chunk_steps"):
        ModelConfig(family="s4", s4=S4Config(kernel="diag", mode="chunked", chunk_steps=0))
