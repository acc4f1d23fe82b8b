"""Tests for spade_jax.model.attention against an independent dense reference.

The reference builds the full (L, L) visibility matrix with numpy from the visibility predicate
and runs a plain masked softmax (empty rows -> 0); it shares no code with the module.
"""
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spade_jax.model import attention as att

B, H, D = 4, 2, 8
RADIUS = 3  # block 4
CHUNK = 4
LENGTHS = [16, 17, 5, 3]


# ----------------------------------------------------------------------------- reference

def visibility(kind, length, causal, mask, radius=RADIUS, chunk=CHUNK):
    """(batch, L, L) numpy bool: [b, i, j] is True iff query i may see key j."""
    i = np.arange(length)[:, None]
    j = np.arange(length)[None, :]
    if kind == "full":
        pred = np.ones((length, length), bool)
    elif kind == "local":
        pred = np.abs(i - j) <= radius
    else:
        pred = (i // chunk) == (j // chunk)
    if causal:
        pred = pred & (j <= i)
    return pred[None] & np.asarray(mask, bool)[:, None, :]


def reference(q, k, v, vis, bias=None, dout=None, scale=None):
    """Dense masked softmax attention in float64 numpy, with a hand-derived backward pass.

    q, k, v: (batch, L, heads, D); vis: (batch, L, L) bool; bias: broadcastable to
    (batch, heads, L, L). Returns the output, and with `dout` (the output cotangent) also
    (dq, dk, dv, dbias) where dbias is (batch, heads, L, L).
    """
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    vis = np.asarray(vis)[:, None]  # (batch, 1, L, L)
    s = np.einsum("bihd,bjhd->bhij", q * scale, k)
    if bias is not None:
        s = s + np.asarray(bias, np.float64)
    s = np.where(vis, s, -np.inf)
    row_max = s.max(-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)  # empty rows
    e = np.where(vis, np.exp(s - row_max), 0.0)
    denom = e.sum(-1, keepdims=True)
    p = e / np.where(denom > 0, denom, 1.0)  # empty rows stay all-zero
    out = np.einsum("bhij,bjhd->bihd", p, v)
    if dout is None:
        return out
    dout = np.asarray(dout, np.float64)
    dv = np.einsum("bhij,bihd->bjhd", p, dout)
    dp = np.einsum("bihd,bjhd->bhij", dout, v)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))  # softmax backward
    dq = np.einsum("bhij,bjhd->bihd", ds, k) * scale
    dk = np.einsum("bhij,bihd->bjhd", ds, q) * scale
    return out, (dq, dk, dv, ds)


def dense_from_offsets(table, length, radius=RADIUS):
    """(H, 2r+1) offset table -> (1, H, L, L) dense bias: [0, h, i, j] = table[h, j - i + r]."""
    table = np.asarray(table, np.float64)
    dense = np.zeros((1, table.shape[0], length, length))
    for i in range(length):
        for j in range(max(0, i - radius), min(length, i + radius + 1)):
            dense[0, :, i, j] = table[:, j - i + radius]
    return dense


def offsets_grad(dbias, radius=RADIUS):
    """Gradient w.r.t. an offset table from a dense (batch, H, L, L) bias gradient."""
    return np.stack([np.trace(dbias, offset=r - radius, axis1=2, axis2=3).sum(0)
                     for r in range(2 * radius + 1)], axis=-1)


def make_mask(kind, length, seed=0):
    """(B, L) bool. 'pad': full row, padding at the end, fully padded row, random holes."""
    if kind is None:
        return np.ones((B, length), bool)
    rng = np.random.default_rng(seed)
    m = np.ones((B, length), bool)
    m[1, max(1, length - 4):] = False
    m[2, :] = False
    m[3] = rng.random(length) < 0.6
    return m


def inputs(length, dtype=jnp.float32, seed=0):
    """q, k, v and an output cotangent, each (B, length, H, D)."""
    ks = jax.random.split(jax.random.key(seed), 4)
    q, k, v, w = (jax.random.normal(kk, (B, length, H, D)) for kk in ks)
    return q.astype(dtype), k.astype(dtype), v.astype(dtype), w


def check_against_reference(fn, args, vis, bias=None, bias_grad=None):
    """Values and gradients of fn(*args) vs the float64 reference.

    args: (q, k, v) or (q, k, v, bias_param). Gradients are of sum(w * output) for a random w,
    w.r.t. every arg; `bias` is the dense bias the reference uses and `bias_grad` maps the
    reference's dense bias gradient to the gradient w.r.t. bias_param.
    """
    q, k, v = args[:3]
    w = jax.random.normal(jax.random.key(42), q.shape)
    weighted = lambda *a: (lambda o: (jnp.sum(w * o), o))(fn(*a))
    (_, out), grads = jax.jit(jax.value_and_grad(weighted, tuple(range(len(args))), has_aux=True))(*args)
    ref_out, (dq, dk, dv, dbias) = reference(q, k, v, vis, bias, dout=w)
    ref_grads = [dq, dk, dv] + ([bias_grad(dbias)] if len(args) == 4 else [])
    np.testing.assert_allclose(out, ref_out, atol=1e-5, rtol=1e-5)
    for name, g, rg in zip("qkvb", grads, ref_grads):
        assert np.all(np.isfinite(g)), name
        np.testing.assert_allclose(g, rg, atol=1e-5, rtol=1e-5, err_msg=f"grad {name}")


# ----------------------------------------------------------------------------- vs reference

MASKS = pytest.mark.parametrize("mask_kind", [None, "pad"])
CAUSAL = pytest.mark.parametrize("causal", [False, True])
BIAS = pytest.mark.parametrize("use_bias", [False, True])


@pytest.mark.parametrize("bias_shape", [(1, H, 5, 6), (H, 5, 6), (6,), (B, 1, 5, 6),
                                        (1, H, 1, 6), (B, 1, 1, 6), (B, H, 5, 6), ()])
def test_sum_to_shape_is_the_gradient_of_a_broadcast(bias_shape):
    """_sum_to_shape (the bias gradient of the attention core: a matrix-vector product over the
    last run of broadcast axes, a reduce over any before it) == autodiff's gradient of
    scores + bias, for leading, middle, several and no broadcast axes."""
    bias = jax.random.normal(jax.random.key(1), bias_shape)
    weight = jax.random.normal(jax.random.key(2), (B, H, 5, 6))
    expected = jax.grad(lambda b: ((jnp.zeros((B, H, 5, 6)) + b) * weight).sum())(bias)
    summed = att._sum_to_shape(weight, bias_shape)
    assert summed.shape == bias.shape
    np.testing.assert_allclose(summed, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("length", LENGTHS)
@MASKS
@CAUSAL
@BIAS
def test_local_matches_reference(length, mask_kind, causal, use_bias):
    q, k, v, _ = inputs(length)
    mask = make_mask(mask_kind, length)
    vis = visibility("local", length, causal, mask)
    passed_mask = None if mask_kind is None else mask
    if use_bias:
        table = jax.random.normal(jax.random.key(7), (H, 2 * RADIUS + 1))
        fn = lambda q, k, v, t: att.local_attention(q, k, v, radius=RADIUS, causal=causal, mask=passed_mask, bias=t)
        check_against_reference(fn, (q, k, v, table), vis, dense_from_offsets(table, length), offsets_grad)
    else:
        fn = lambda q, k, v: att.local_attention(q, k, v, radius=RADIUS, causal=causal, mask=passed_mask)
        check_against_reference(fn, (q, k, v), vis)


# Full attention never pads, so one length per kind (block multiple or not) is enough.
@pytest.mark.parametrize("length", [16, 5])
@MASKS
@CAUSAL
@BIAS
def test_full_matches_reference(length, mask_kind, causal, use_bias):
    q, k, v, _ = inputs(length)
    mask = make_mask(mask_kind, length)
    vis = visibility("full", length, causal, mask)
    passed_mask = None if mask_kind is None else mask
    if use_bias:
        bias = jax.random.normal(jax.random.key(8), (B, H, length, length))
        fn = lambda q, k, v, b: att.full_attention(q, k, v, causal=causal, mask=passed_mask, bias=b)
        check_against_reference(fn, (q, k, v, bias), vis, bias, lambda d: d)
    else:
        fn = lambda q, k, v: att.full_attention(q, k, v, causal=causal, mask=passed_mask)
        check_against_reference(fn, (q, k, v), vis)


@pytest.mark.parametrize("length", LENGTHS)
@MASKS
@CAUSAL
def test_chunk_matches_reference(length, mask_kind, causal):
    q, k, v, _ = inputs(length)
    mask = make_mask(mask_kind, length)
    vis = visibility("chunk", length, causal, mask)
    passed_mask = None if mask_kind is None else mask
    fn = lambda q, k, v: att.chunk_attention(q, k, v, chunk=CHUNK, causal=causal, mask=passed_mask)
    check_against_reference(fn, (q, k, v), vis)


def test_explicit_scale():
    q, k, v, _ = inputs(9)
    vis = visibility("local", 9, False, make_mask(None, 9))
    out = jax.jit(partial(att.local_attention, radius=RADIUS, scale=0.3))(q, k, v)
    np.testing.assert_allclose(out, reference(q, k, v, vis, scale=0.3), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("radius", [0, 2, 5])
def test_local_matches_jax_window(causal, radius):
    length = 23
    q, k, v, _ = inputs(length, seed=3)
    window = (radius, 0) if causal else (radius, radius)
    ref = jax.jit(partial(jax.nn.dot_product_attention, local_window_size=window, is_causal=causal))(q, k, v)
    out = jax.jit(partial(att.local_attention, radius=radius, causal=causal))(q, k, v)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- edge cases

def test_empty_rows_are_exactly_zero_with_finite_grads():
    length = 12
    q, k, v, w = inputs(length)
    mask = np.ones((B, length), bool)
    mask[0, 3:9] = False  # with radius 1, queries 5..6 see nothing
    mask[2] = False  # whole sequence padded
    fns = {
        "local": lambda q, k, v: att.local_attention(q, k, v, radius=1, mask=mask),
        "full": lambda q, k, v: att.full_attention(q, k, v, mask=mask),
        "chunk": lambda q, k, v: att.chunk_attention(q, k, v, chunk=4, mask=mask),  # chunk 1 empty
    }
    empty = {"local": (0, [5, 6]), "full": (2, list(range(length))), "chunk": (0, [4, 5, 6, 7])}
    for name, fn in fns.items():
        out = np.asarray(jax.jit(fn)(q, k, v))
        b, rows = empty[name]
        assert np.all(out[b, rows] == 0.0), name
        assert np.all(out[2] == 0.0), name
        assert np.all(np.isfinite(out)), name
        assert np.any(out[0] != 0.0), name
        grads = jax.jit(jax.grad(lambda q, k, v: jnp.sum(w * fn(q, k, v)), (0, 1, 2)))(q, k, v)
        for g in grads:
            assert np.all(np.isfinite(g)), name
        np.testing.assert_array_equal(grads[0][b, rows], 0.0)  # empty rows do not depend on q


@pytest.mark.parametrize("name", ["local", "full", "chunk"])
def test_bf16(name):
    length = 21
    q, k, v, _ = inputs(length)
    mask = make_mask("pad", length)
    fns = {
        "local": lambda q, k, v: att.local_attention(q, k, v, radius=RADIUS, causal=True, mask=mask),
        "full": lambda q, k, v: att.full_attention(q, k, v, mask=mask),
        "chunk": lambda q, k, v: att.chunk_attention(q, k, v, chunk=CHUNK, mask=mask),
    }
    vis = {"local": visibility("local", length, True, mask), "full": visibility("full", length, False, mask),
           "chunk": visibility("chunk", length, False, mask)}[name]
    bf = [x.astype(jnp.bfloat16) for x in (q, k, v)]
    weighted = lambda *a: (lambda o: (jnp.sum(o.astype(jnp.float32)), o))(fns[name](*a))
    (_, out), grads = jax.jit(jax.value_and_grad(weighted, (0, 1, 2), has_aux=True))(*bf)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(out.astype(jnp.float32), reference(*bf, vis), atol=3e-2, rtol=3e-2)
    assert all(g.dtype == jnp.bfloat16 and np.all(np.isfinite(g.astype(jnp.float32))) for g in grads)


@pytest.mark.parametrize("t", [0, 6, 7, 12])
def test_causal_local_ignores_future(t):
    length = 19
    q, k, v, _ = inputs(length)
    q2, k2, v2, _ = inputs(length, seed=1)
    after = (np.arange(length) > t)[None, :, None, None]
    mixed = [jnp.where(after, b, a) for a, b in zip((q, k, v), (q2, k2, v2))]
    fn = jax.jit(lambda q, k, v: att.local_attention(q, k, v, radius=RADIUS, causal=True))
    out, out2 = np.asarray(fn(q, k, v)), np.asarray(fn(*mixed))
    np.testing.assert_array_equal(out[:, :t + 1], out2[:, :t + 1])
    assert not np.allclose(out[:, t + 1:], out2[:, t + 1:])
    # The non-causal version does look ahead (so the test above can fail).
    nc = jax.jit(partial(att.local_attention, radius=RADIUS))
    assert not np.allclose(nc(q, k, v)[:, :t + 1], nc(*mixed)[:, :t + 1])


# ----------------------------------------------------------------------------- relative bias

def test_relative_position_bucket_hand_values():
    # Bidirectional, 32 buckets, max 128: 16 per sign, 8 exact, then 8 log buckets over [8, 128).
    rp = np.array([0, -1, 1, -7, 7, -8, 8, -32, -64, -127, -128, -1000, 128, 1000])
    want = [0, 1, 17, 7, 23, 8, 24, 12, 14, 15, 15, 15, 31, 31]
    got = att.relative_position_bucket(rp, bidirectional=True)
    assert got.dtype == jnp.int32
    np.testing.assert_array_equal(got, want)
    # Unidirectional: future -> 0; 16 exact, then 16 log buckets over [16, 128).
    # e.g. rp=-32: 16 + int(log(32/16) / log(128/16) * 16) = 16 + int(5.33) = 21.
    rp = np.array([5, 1, 0, -1, -15, -16, -32, -64, -127, -128, -5000])
    want = [0, 0, 0, 1, 15, 16, 21, 26, 31, 31, 31]
    np.testing.assert_array_equal(att.relative_position_bucket(rp, bidirectional=False), want)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_bucket_monotone_and_capped(bidirectional):
    d = np.arange(0, 400)
    neg = np.asarray(att.relative_position_bucket(-d, bidirectional=bidirectional))
    assert np.all(np.diff(neg) >= 0) and neg.max() == (15 if bidirectional else 31)
    assert np.all(neg[d >= 128] == neg.max())
    assert len(np.unique(neg)) == (16 if bidirectional else 32)  # every bucket is used
    pos = np.asarray(att.relative_position_bucket(d, bidirectional=bidirectional))
    if bidirectional:
        assert np.all(np.diff(pos[1:]) >= 0) and pos[1] == 17 and np.all(pos[d >= 128] == 31)
        assert set(pos[1:]).isdisjoint(neg)
    else:
        assert np.all(pos == 0)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_bias_module(bidirectional):
    radius, length = 5, 20
    mod = att.RelativePositionBias(num_heads=H, bidirectional=bidirectional)
    variables = jax.jit(mod.init, static_argnums=(1, 2))(jax.random.key(0), length, length)
    apply = jax.jit(mod.apply, static_argnums=(1, 2))  # (variables, q_len, k_len)
    boxed = variables["params"]["embedding"]
    assert isinstance(boxed, nn.LogicallyPartitioned) and boxed.names == ("relpos_buckets", "heads")
    emb = np.asarray(nn.unbox(variables)["params"]["embedding"])
    assert emb.shape == (32, H) and 0 < emb.std() < 0.1

    dense = np.asarray(apply(variables, length, length))
    assert dense.shape == (1, H, length, length)
    # Independent expectation from the bucket function directly.
    rel = np.arange(length)[None] - np.arange(length)[:, None]
    buckets = np.asarray(att.relative_position_bucket(rel, bidirectional=bidirectional))
    np.testing.assert_array_equal(dense[0], emb[buckets].transpose(2, 0, 1))

    table = np.asarray(jax.jit(partial(mod.apply, method="offsets"),
                               static_argnums=1)(variables, radius))
    assert table.shape == (H, 2 * radius + 1)
    for i in range(radius, length - radius):
        for r in range(2 * radius + 1):
            np.testing.assert_array_equal(table[:, r], dense[0, :, i, i + r - radius])

    # Rectangular (q_length != k_length), and the gradient w.r.t. the bucket embedding is the
    # sum of the dense gradient over the (i, j) pairs falling in each bucket.
    for q_len, k_len in ((7, 12), (12, 7), (1, 5)):
        weights = np.random.default_rng(q_len).normal(size=(1, H, q_len, k_len))
        rel = np.arange(k_len)[None] - np.arange(q_len)[:, None]
        buckets = np.asarray(att.relative_position_bucket(rel, bidirectional=bidirectional))
        np.testing.assert_array_equal(apply(variables, q_len, k_len)[0],
                                      emb[buckets].transpose(2, 0, 1))
        grad = jax.jit(jax.grad(lambda v: jnp.sum(mod.apply(v, q_len, k_len) * weights)))(
            variables)
        expected = np.zeros_like(emb)
        np.add.at(expected, buckets, weights[0].transpose(1, 2, 0))
        np.testing.assert_allclose(nn.unbox(grad)["params"]["embedding"], expected, atol=1e-5)

    # The offset table fed to local_attention equals the dense bias fed to full attention.
    q, k, v, _ = inputs(length)
    vis = visibility("local", length, False, make_mask(None, length), radius=radius)
    local = jax.jit(partial(att.local_attention, radius=radius))
    np.testing.assert_allclose(local(q, k, v, bias=table), reference(q, k, v, vis, dense),
                               atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- memory

def test_local_attention_memory_is_linear():
    length, radius, dim = 16384, 127, 16
    shape = jax.ShapeDtypeStruct((1, length, 1, dim), jnp.float32)
    fn = jax.jit(partial(att.local_attention, radius=radius, causal=True))
    lowered = fn.lower(shape, shape, shape)
    assert f"{length}x{length}" not in lowered.as_text()  # no (L, L) array in the program
    compiled = lowered.compile()
    mem = compiled.memory_analysis()
    if mem is not None and getattr(mem, "temp_size_in_bytes", None) is not None:
        assert mem.temp_size_in_bytes < length * length * 4 // 8
    q, k, v = jax.random.normal(jax.random.key(0), (3, *shape.shape))
    out = compiled(q, k, v)
    assert out.shape == shape.shape and np.all(np.isfinite(out))
    # Spot-check one row against its exact causal window computed directly.
    i0 = 5000
    window = slice(i0 - radius, i0 + 1)
    s = np.asarray(k[0, window, 0], np.float64) @ np.asarray(q[0, i0, 0], np.float64) / np.sqrt(dim)
    p = np.exp(s - s.max())
    np.testing.assert_allclose(out[0, i0, 0], p @ np.asarray(v[0, window, 0]) / p.sum(), atol=1e-5, rtol=1e-5)


def test_causal_local_skips_the_next_block():
    """Causal local attention scores 2 key blocks per query block instead of 3."""
    shape = jax.ShapeDtypeStruct((1, 2048, 1, 16), jnp.float32)
    flops = [jax.jit(partial(att.local_attention, radius=127, causal=c)).lower(shape, shape, shape)
             .compile().cost_analysis()["flops"] for c in (False, True)]
    assert 0.6 < flops[1] / flops[0] < 0.72
