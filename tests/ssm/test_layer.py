"""S4Layer: convolution against numpy, FFT vs scan vs step, causality, padding, errors, memory."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spade_jax.model.ssm import S4Layer, kernels

H, N = 4, 8


def _setup(length=33, batch=2, **kw):
    layer = S4Layer(**{"d_model": H, "d_state": N, **kw})
    u = jax.random.normal(jax.random.PRNGKey(1), (batch, length, H))
    return layer, jax.jit(layer.init)(jax.random.PRNGKey(0), u), u


def _apply(layer, params, *args, method=None):
    """layer.apply(params, *args, method=method), jitted (int arguments static): one compiled
    program instead of one per operation."""
    static = tuple(i + 1 for i, a in enumerate(args) if isinstance(a, int))
    return jax.jit(functools.partial(layer.apply, method=method), static_argnums=static)(
        params, *args)


@pytest.mark.parametrize("kernel", ["dplr", "diag"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_output_is_convolution_plus_skip(kernel, bidirectional):
    layer, params, u = _setup(kernel=kernel, bidirectional=bidirectional)
    length = u.shape[1]
    k = np.asarray(_apply(layer, params, length, method="conv_kernel"), np.float64)
    assert k.shape == (2 if bidirectional else 1, H, length)
    d = np.asarray(nn.unbox(params)["params"]["D"])
    un = np.asarray(u, np.float64)
    want = un * d
    for b in range(un.shape[0]):
        for h in range(H):
            want[b, :, h] += np.convolve(un[b, :, h], k[0, h])[:length]
            if bidirectional:  # sum_{s >= t} K1[s - t] u_s
                want[b, :, h] += np.convolve(un[b, ::-1, h], k[1, h])[:length][::-1]
    got = _apply(layer, params, u)
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_diag_fft_and_scan_agree(discretization, bidirectional):
    kw = dict(kernel="diag", discretization=discretization, bidirectional=bidirectional)
    layer, params, u = _setup(**kw)
    fft = _apply(layer, params, u)
    scan = _apply(S4Layer(d_model=H, d_state=N, mode="scan", **kw), params, u)
    np.testing.assert_allclose(fft, scan, atol=1e-5 * float(jnp.abs(fft).max()))


@pytest.mark.parametrize("kernel", ["dplr", "diag"])
def test_step_by_step_recurrence_matches_parallel(kernel):
    length = 40
    layer, params, u = _setup(length=length, kernel=kernel, l_max=length)
    parallel = _apply(layer, params, u)
    state = _apply(layer, params, u.shape[0], method="init_state")
    step = jax.jit(lambda s, x: layer.apply(params, s, x, method="step"))
    outs = []
    for t in range(length):
        state, y = step(state, u[:, t])
        outs.append(y)
    np.testing.assert_allclose(jnp.stack(outs, 1), parallel, atol=2e-5 * float(jnp.abs(parallel).max()))


@pytest.mark.parametrize("kernel,mode", [("dplr", "fft"), ("diag", "fft"), ("diag", "scan")])
def test_causal_layer_ignores_the_future(kernel, mode):
    layer, params, u = _setup(kernel=kernel, mode=mode)
    t = 20
    changed = u.at[:, t + 1:].set(jax.random.normal(jax.random.PRNGKey(7), u[:, t + 1:].shape))
    a, b = _apply(layer, params, u), _apply(layer, params, changed)
    np.testing.assert_allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-5)
    assert not np.allclose(a[:, t + 1:], b[:, t + 1:])


@pytest.mark.parametrize("kernel,mode", [("dplr", "fft"), ("diag", "fft"), ("diag", "scan")])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_never_changes_real_positions(kernel, mode, bidirectional):
    length, real = 33, 21
    layer, params, u = _setup(length=length, kernel=kernel, mode=mode, bidirectional=bidirectional,
                              l_max=length)
    mask = jnp.arange(length)[None, :] < real
    mask = jnp.broadcast_to(mask, (2, length))
    garbage = jnp.where(mask[..., None], u, 1e3)
    padded = _apply(layer, params, garbage, mask)
    unpadded = _apply(layer, params, u[:, :real])
    np.testing.assert_allclose(padded[:, :real], unpadded, atol=1e-4)


def test_dplr_kernel_is_truncated_from_l_max():
    layer, params, u = _setup(length=32, kernel="dplr", l_max=32)
    short = _apply(layer, params, 20, method="conv_kernel")
    np.testing.assert_allclose(short, _apply(layer, params, 32, method="conv_kernel")[..., :20])
    with pytest.raises(ValueError, match="l_max"):
        _apply(layer, params, 33, method="conv_kernel")


def test_bfloat16_inputs():
    layer, params, u = _setup(kernel="dplr")
    y16 = _apply(layer, params, u.astype(jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16
    y32 = _apply(layer, params, u.astype(jnp.bfloat16).astype(jnp.float32))
    np.testing.assert_allclose(y16.astype(jnp.float32), y32, atol=0.05 * float(jnp.abs(y32).max()))


def test_complex_quantities_are_real_parameters():
    _, params, _ = _setup(kernel="dplr", bidirectional=True)
    leaves = jax.tree_util.tree_leaves_with_path(params)
    assert all(leaf.dtype == jnp.float32 for _, leaf in leaves)
    shapes = {jax.tree_util.keystr(path): leaf.shape for path, leaf in leaves}
    assert any("'C'" in k and v == (2, H, N // 2, 2) for k, v in shapes.items())
    assert any("'P'" in k and v == (H, N // 2, 2) for k, v in shapes.items())


@pytest.mark.parametrize("kw,match", [
    (dict(kernel="dplr", mode="scan"), "kernel='diag'"),
    (dict(kernel="cauchy"), "'dplr' or 'diag'"),
    (dict(kernel="dplr", discretization="zoh"), "discretization"),
    (dict(d_state=7), "even state size"),
    (dict(dt_min=0.1, dt_max=0.01), "dt_min"),
])
def test_bad_options_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        _setup(**kw)


def test_step_needs_causal_and_l_max():
    layer, params, _ = _setup(kernel="dplr", bidirectional=True, l_max=33)
    with pytest.raises(ValueError, match="causal"):
        _apply(layer, params, 1, method="init_state")
    layer, params, _ = _setup(kernel="dplr")
    with pytest.raises(ValueError, match="l_max"):
        _apply(layer, params, 1, method="init_state")


@pytest.mark.parametrize("kernel", ["dplr", "diag"])
def test_kernel_generation_memory_is_chunked_at_16k(kernel, monkeypatch):
    """d_model 256, d_state 64, L = 16384, chunks of 2**22 elements: forward and backward of the
    kernel compile to a small working set (an unchunked (H, N/2, L/2) complex intermediate alone
    would be 0.5 GiB; the default chunk is larger, for speed, and bounded the same way)."""
    monkeypatch.setattr(kernels, "CHUNK_ELEMENTS", 2**22)
    length = 16384
    layer = S4Layer(d_model=256, d_state=64, kernel=kernel, l_max=length)
    params = jax.jit(layer.init)(jax.random.PRNGKey(0), jnp.zeros((1, 4, 256)))
    loss = lambda p: layer.apply(p, length, method="conv_kernel").sum()
    compiled = jax.jit(jax.grad(loss)).lower(params).compile()
    stats = compiled.memory_analysis()
    if stats is None:
        pytest.skip("this backend reports no memory analysis")
    assert stats.temp_size_in_bytes < 512 * 2**20


def test_fft_convolution_is_split_over_the_batch_shards():
    """Under a mesh whose rules split the batch (spade_jax.train.sharding.model_context), every FFT of
    the layer's forward and backward runs on one device's examples (XLA's partitioners would
    gather the whole batch onto every device), and the values and the gradients are those of
    the unsharded layer."""
    import re

    from spade_jax.train import sharding
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    layer, params, u = _setup(length=16, batch=16, bidirectional=True)

    def loss(p, x):
        return jnp.sum(jnp.tanh(layer.apply(p, x)))

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    want = grad(params, u)
    placed = jax.device_put(u, sharding.batch_sharding(mesh, 3))
    with sharding.model_context(mesh, sharding.DEFAULT_RULES):
        compiled = grad.lower(params, placed).compile()
        got = compiled(params, placed)
    # rank-3 FFTs: (examples, H, n) of the convolution, (directions, H, n) of the kernel
    leading = [int(m) for m in re.findall(r"\[(\d+),\d+,\d+\]\{[\d,]+\} fft\(", compiled.as_text())]
    assert 4 in leading and 16 not in leading, leading  # 16 examples over data x fsdp = 4
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length,two_sided", [(50, True), (50, False), (1000, True), (300, False)])
def test_dft_convolution_equals_the_fft_one(length, two_sided):
    """The four-step DFT convolution (matrix products; what the layer runs on a TPU) gives the
    FFT convolution's output and gradients to float32 precision: kernels of 2L (two-sided,
    negative lags at the end) and L (causal) points, lengths that N = N1 x 128 >= 2L exceeds."""
    from spade_jax.model.ssm import layer as layer_lib
    keys = jax.random.split(jax.random.PRNGKey(length), 3)
    u = jax.random.normal(keys[0], (2, length, 3))
    k = 0.1 * jax.random.normal(keys[1], (3, 2 * length if two_sided else length))
    cotangent = jax.random.normal(keys[2], (2, length, 3))

    def value_and_grads(conv):
        out, pull = jax.vjp(conv, u, k)
        return (out, *pull(cotangent))
    for got, want in zip(jax.jit(functools.partial(value_and_grads, layer_lib._local_dft_conv))(),
                         value_and_grads(layer_lib._local_fft_conv)):
        scale = float(jnp.max(jnp.abs(want)))
        np.testing.assert_allclose(got / scale, want / scale, atol=2e-6)


def test_the_layer_convolves_by_dft_in_a_program_for_a_tpu(monkeypatch):
    """The convolution is chosen by the platform the program is for: the DFT one under a TPU
    topology's mesh (compiled from this CPU host), the FFT one here."""
    from spade_jax.model.ssm import layer as layer_lib
    from spade_jax.runtime import accelerators
    from spade_jax.train import sharding
    if accelerators.libtpu_version() is None:
        pytest.skip('libtpu is not installed (pip install "jax[tpu]")')
    used = []
    for name in ("_local_dft_conv", "_local_fft_conv"):
        original = getattr(layer_lib, name)
        monkeypatch.setattr(layer_lib, name, functools.partial(
            lambda original, name, *a: used.append(name) or original(*a), original, name))
    layer, params, u = _setup(length=16, batch=8, bidirectional=True)
    jax.eval_shape(layer.apply, params, u)
    assert used and set(used) == {"_local_fft_conv"}
    used.clear()
    devices = accelerators.topology_devices(accelerators.parse("v5litepod-8"))
    with sharding.model_context(sharding.make_mesh({"data": -1}, devices), sharding.DEFAULT_RULES):
        jax.eval_shape(layer.apply, params, u)
    assert used and set(used) == {"_local_dft_conv"}
