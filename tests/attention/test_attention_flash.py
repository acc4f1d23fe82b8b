"""Tests for spade_jax.model.attention_flash (model.attention_impl='flash').

The fused kernels run in the Pallas interpreter on the CPU and must equal the blocked kernels of
spade_jax.model.attention (checked against a dense reference in test_attention.py): outputs and the
gradients of q, k, v and the T5 bucket table, bidirectional and causal, lengths that are not a
multiple of the tile, padding masks and rows that see no key. Tiles of 8 here (128 on a TPU), so
that a small case spans many tiles. The Mosaic compile for TPU topologies is checked where
libtpu is installed.
"""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spade_jax.model import attention as att
from spade_jax.model import attention_accel as accel
from spade_jax.model import attention_flash as flash
from spade_jax.model import models
from spade_jax.model.config import ConfigError
from spade_jax.runtime import accelerators

H, D, BUCKETS = 2, 8, dict(num_buckets=16, max_distance=12)
needs_libtpu = pytest.mark.skipif(accelerators.libtpu_version() is None,
                                  reason='libtpu is not installed (pip install "jax[tpu]")')


def _inputs(batch, length, real, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 5)
    q, k, v, d_out = (jax.random.normal(key, (batch, length, H, D)) for key in keys[:4])
    mask = None if real is None else jnp.arange(length)[None, :] < jnp.asarray(real)[:, None]
    table = jax.random.normal(keys[4], (BUCKETS["num_buckets"], H))
    return q, k, v, d_out, mask, table


def _offset_table(table, radius, causal):
    """(heads, 2 * radius + 1) per-offset bias from a (buckets, heads) table, as the model's
    RelativePositionBias.offsets builds it."""
    buckets = att.relative_position_bucket(np.arange(-radius, radius + 1),
                                           bidirectional=not causal, **BUCKETS)
    return jnp.take(table, buckets, axis=0).T


def _both(radius, causal, mask, block=8):
    """The blocked and the interpreted flash kernel as functions of (q, k, v, bucket table)."""
    starts = flash.bucket_runs(radius, bidirectional=not causal, **BUCKETS)

    def blocked(q, k, v, table):
        return att.local_attention(q, k, v, radius=radius, causal=causal, mask=mask,
                                   bias=_offset_table(table, radius, causal))

    def fused(q, k, v, table):
        bias = flash.run_values(_offset_table(table, radius, causal), starts)
        return flash.flash_attention(q, k, v, window=(radius, 0 if causal else radius),
                                     mask=mask, bias=bias, starts=starts, block=block,
                                     interpret=True)
    return blocked, fused


def _value_and_grads(fn, d_out, *args):
    def loss(*a):
        return jnp.sum(fn(*a) * d_out)
    return jax.jit(lambda *a: (fn(*a), jax.grad(loss, argnums=tuple(range(len(a))))(*a)))(*args)


@pytest.mark.slow
@pytest.mark.parametrize("causal,length,radius,real", [
    # 45 is not a multiple of the tile of 8; in the second row the queries from 30 + radius on
    # see no key; the window spans three tiles each side.
    (False, 45, 19, (45, 12)),
    (True, 45, 9, (40, 5)),
    pytest.param(False, 64, 3, None, marks=pytest.mark.long),  # a window inside one tile
])
def test_flash_interpreted_matches_blocked(causal, length, radius, real):
    q, k, v, d_out, mask, table = _inputs(2, length, real)
    blocked, fused = _both(radius, causal, mask)
    out, grads = _value_and_grads(fused, d_out, q, k, v, table)
    expected, expected_grads = _value_and_grads(blocked, d_out, q, k, v, table)
    np.testing.assert_allclose(out, expected, atol=2e-6, rtol=1e-5)
    if real is not None:  # rows with no visible key are exactly zero, and nothing is NaN
        assert not np.any(np.asarray(out[1, real[1] + radius + 1:]))
    for name, g, e in zip(("q", "k", "v", "table"), grads, expected_grads):
        assert np.all(np.isfinite(g)), name
        np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5, err_msg=name)


@pytest.mark.slow
def test_flash_without_bias_in_chunks_matches_blocked_chunk_attention(monkeypatch):
    """The chunk kind: the chunks reshaped into the batch, a causal window unbounded on the
    left inside each, padding keys masked."""
    monkeypatch.setattr(flash, "INTERPRET", True)
    monkeypatch.setattr(flash, "flash_attention", partial(flash.flash_attention, block=8))
    q, k, v, d_out, mask, _ = _inputs(2, 40, (40, 23))
    out, grads = _value_and_grads(
        lambda q, k, v: accel.attend("flash", (None, 0), q, k, v, chunk=16, mask=mask),
        d_out, q, k, v)
    expected, expected_grads = _value_and_grads(
        lambda q, k, v: att.chunk_attention(q, k, v, chunk=16, causal=True, mask=mask),
        d_out, q, k, v)
    np.testing.assert_allclose(out, expected, atol=2e-6, rtol=1e-5)
    for g, e in zip(grads, expected_grads):
        np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("radius,buckets", [(255, (32, 128)), (511, (32, 128)), (40, (16, 12))])
def test_bucket_runs_rebuild_the_offset_table(causal, radius, buckets):
    """The run values read at each run's first offset give back every offset's bias: the
    per-offset table is constant on each run, and a new run starts wherever the bucket changes."""
    num_buckets, max_distance = buckets
    starts = flash.bucket_runs(radius, bidirectional=not causal, num_buckets=num_buckets,
                               max_distance=max_distance)
    offsets = np.arange(-radius, radius + 1)
    buckets = att.relative_position_bucket(offsets, bidirectional=not causal,
                                           num_buckets=num_buckets, max_distance=max_distance)
    table = np.random.default_rng(0).normal(size=(num_buckets, 3)).astype(np.float32)[buckets].T
    values = np.asarray(flash.run_values(jnp.asarray(table), starts))
    run = np.searchsorted(np.asarray(starts), offsets, side="right")  # the run of each offset
    np.testing.assert_array_equal(values[:, run], table)
    assert len(starts) + 1 == len(np.unique(buckets))  # one run per bucket met


def test_numpy_buckets_equal_the_traced_ones():
    """The model's tables and the kernel's runs bucket on the host in numpy: they must agree
    with the jnp computation (what XLA computed before) over a long range of offsets."""
    offsets = np.arange(-(2**20), 2**20)
    for bidirectional in (True, False):
        for num_buckets, max_distance in ((32, 128), (64, 256), (16, 12)):
            kw = dict(bidirectional=bidirectional, num_buckets=num_buckets,
                      max_distance=max_distance)
            host = att.relative_position_bucket(offsets, **kw)
            assert isinstance(host, np.ndarray)
            np.testing.assert_array_equal(
                host, att.relative_position_bucket(jnp.asarray(offsets), **kw))


@pytest.mark.slow
def test_flash_is_split_over_the_batch_and_heads_of_a_mesh(monkeypatch):
    """Under a 2 x 2 x 2 mesh the kernels run inside jax.shard_map on each device's examples and
    heads; the bias table's gradient is summed over the devices that share it."""
    from spade_jax.train import sharding
    monkeypatch.setattr(flash, "INTERPRET", True)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    q, k, v, d_out, mask, table = _inputs(4, 24, (24, 10, 24, 3))
    _, fused = _both(5, False, mask)
    seen = []
    local = flash._flash_local
    monkeypatch.setattr(flash, "_flash_local",
                        lambda q, *a, **kw: seen.append(q.shape) or local(q, *a, **kw))
    with sharding.model_context(mesh, sharding.DEFAULT_RULES):
        out, grads = _value_and_grads(fused, d_out, q, k, v, table)
    assert seen and all(shape == (1, 24, 1, D) for shape in seen), seen
    expected, expected_grads = _value_and_grads(fused, d_out, q, k, v, table)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    for g, e in zip(grads, expected_grads):
        np.testing.assert_allclose(g, e, atol=1e-5)


def test_flash_refuses_a_backend_without_tpu_unless_interpreted():
    q = jnp.zeros((1, 16, H, D))
    with pytest.raises(RuntimeError, match="attention_impl='flash' needs a TPU .*'cpu'"):
        flash.flash_attention(q, q, q, window=(4, 4))
    with pytest.raises(ValueError, match="bias and starts together"):
        flash.flash_attention(q, q, q, window=(4, 4), bias=jnp.zeros((H, 2)), interpret=True)


SMALL = dict(vocab_size=20, num_layers=2, d_model=32, num_heads=2, d_ff=64, max_len=200,
             radius=20, chunk_size=64, s4={"d_state": 4, "kernel": "diag"}, dropout=0.0)


@pytest.mark.slow
def test_spade_with_flash_matches_blocked(monkeypatch):
    """The same parameters give the same logits and gradients whichever kernel the config
    selects, the T5 bias included (SPADE's recipe: window attention, position 'relative')."""
    monkeypatch.setattr(flash, "INTERPRET", True)
    monkeypatch.setattr(flash, "flash_attention", partial(flash.flash_attention, block=16))
    fields = dict(SMALL, family="spade", local_attention="window", position="relative")
    blocked = models.build_model(dict(fields, attention_impl="blocked"))
    fused = models.build_model(dict(fields, attention_impl="flash"))
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 70), 1, 20).at[1, 50:].set(0)
    params = blocked.init(jax.random.PRNGKey(1), tokens)

    def loss(model, params):
        return jnp.sum(model.apply(params, tokens) ** 2)
    grads = jax.jit(jax.grad(partial(loss, fused)))(params)
    expected = jax.grad(partial(loss, blocked))(params)
    np.testing.assert_allclose(jax.jit(fused.apply)(params, tokens), blocked.apply(params, tokens),
                               atol=1e-5, rtol=1e-5)
    relpos = grads["params"]["encoder"]["relpos"]["embedding"]
    assert np.any(np.asarray(relpos))  # the bias is trained through the kernel
    jax.tree.map(lambda g, e: np.testing.assert_allclose(g, e, atol=1e-4, rtol=1e-4), grads,
                 expected)


def test_flash_takes_the_window_bias_but_not_a_dense_one():
    models.build_model(dict(SMALL, family="spade", attention_impl="flash", position="relative"))
    with pytest.raises(ConfigError, match="'flash' takes the relative-position bias of window"):
        models.build_model(dict(SMALL, family="transformer", attention_impl="flash",
                                position="relative"))


@needs_libtpu
@pytest.mark.parametrize("accelerator", ["v5litepod-8", "v4-8"])
def test_flash_compiles_for_tpu_under_a_mesh(accelerator):
    """Forward and backward with the T5 bias and a mask, Mosaic-compiled for an 8-chip v5e and a
    v4 (megacore) slice from this CPU host, at a Path-X-like shape per chip (radius 255, 4K
    tokens): the kernels' tiles stay on chip, so nothing of (tokens x window) size is in HBM."""
    from spade_jax.train import sharding
    devices = accelerators.topology_devices(accelerators.parse(accelerator))
    mesh = sharding.make_mesh({"data": -1}, devices)
    batch, length, radius = 2 * len(devices), 4096, 255
    starts = flash.bucket_runs(radius, bidirectional=True, num_buckets=32, max_distance=128)

    def loss(q, k, v, bias, mask):
        out = flash.flash_attention(q, k, v, window=(radius, radius), mask=mask, bias=bias,
                                    starts=starts)
        return jnp.sum(out.astype(jnp.float32) ** 2)
    P, Sharded = jax.sharding.PartitionSpec, jax.sharding.NamedSharding
    x = jax.ShapeDtypeStruct((batch, length, 2, 32), jnp.bfloat16,
                             sharding=Sharded(mesh, P("data")))
    bias = jax.ShapeDtypeStruct((2, len(starts) + 1), jnp.float32, sharding=Sharded(mesh, P()))
    mask = jax.ShapeDtypeStruct((batch, length), bool, sharding=Sharded(mesh, P("data")))
    with sharding.model_context(mesh, sharding.DEFAULT_RULES):
        compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3))).lower(x, x, x, bias,
                                                                       mask).compile()
    per_chip_scores = (batch // len(devices)) * 2 * length * (2 * radius + 1) * 4
    assert compiled.memory_analysis().temp_size_in_bytes < per_chip_scores / 4
    assert "flash_window_dkv" in compiled.as_text()
