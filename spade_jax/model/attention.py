"""Attention kernels: full, blocked local (LongT5 style) and chunk attention, plus T5 relative bias.

Conventions used throughout:
  * q, k, v: (batch, length, heads, head_dim); outputs have the same shape and q's dtype.
  * mask: optional (batch, length) bool, True for real tokens. Keys whose mask is False are never
    attended to; queries are not masked (a padded query still gets an output, callers ignore it).
  * q is multiplied by `scale` (default head_dim ** -0.5) before the dot product.
  * Scores and the softmax are computed in float32 whatever the input dtype. A query row with no
    visible key gets exactly zero output, and its gradients are finite (no NaN anywhere).

All three kernels go through one masked-softmax core, `_attend`.
"""
from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spade_jax.model import axes

Array = jax.Array

# Finite stand-in for -inf: exp(_MASKED - max) underflows to exactly 0 and never produces NaN.
_MASKED = -1e30


def _sum_to_shape(g: Array, shape: tuple[int, ...]) -> Array:
    """Sums `g` over the axes along which an array of `shape` was broadcast to g.shape (the
    gradient of a broadcast: a bias shared by the batch, the heads or the blocks), in g's dtype.

    The last run of summed axes is contracted with a vector of ones, a matrix-vector product
    batched over the axes before it; any summed axis before those (small by then) is left to
    XLA's reduce. On the CPU this runs 2x faster than XLA's reduce over the same axes for local
    attention's (batch, heads, blocks, w, 3w) scores (the bias table's gradient took 16% of a
    Text-sized local-attention layer's forward + backward, issue 22), and several times faster
    for full attention's (batch, ...) dense bias.
    """
    full = (1,) * (g.ndim - len(shape)) + tuple(shape)  # shape aligned with g
    summed = [i for i in range(g.ndim) if full[i] == 1 and g.shape[i] != 1]
    if not summed:
        return g.reshape(shape)
    last = first = summed[-1]
    while first - 1 in summed:
        first -= 1
    rows = int(np.prod(g.shape[first:last + 1]))
    x = g.reshape(*g.shape[:first], rows, int(np.prod(g.shape[last + 1:])))
    out = jax.lax.dot_general(jnp.ones((rows,), g.dtype), x, (((0,), (first,)), ((), ())),
                              precision=jax.lax.Precision.HIGHEST)  # (g.shape[:first], rest)
    out = out.reshape(*g.shape[:first], *g.shape[last + 1:])
    before = tuple(i for i in summed if i < first)
    return (out.sum(axis=before) if before else out).reshape(shape)


def _matmul(a: Array, b: Array, contract_a: int, contract_b: int) -> Array:
    """Product of the matrices in the last two axes of a and b, batched over their (equal) leading
    axes, contracting axis `contract_a` of a with `contract_b` of b (-1 or -2); float32 result."""
    batch = tuple(range(a.ndim - 2))
    return jax.lax.dot_general(a, b, (((a.ndim + contract_a,), (b.ndim + contract_b,)),
                                      (batch, batch)), preferred_element_type=jnp.float32)


def _transposed_product(a: Array, b: Array) -> Array:
    """a^T b of (..., n, i) and (..., n, j), returned as (..., j, i): the gradient of keys and
    values. XLA's CPU backend runs the product fastest as (..., i, n) @ (..., n, j) -> (..., i, j)
    (40-46 against 23-26 GFLOP/s measured for the local-attention blocks); the barrier keeps it
    from folding the final transpose back into the product."""
    return jnp.swapaxes(jax.lax.optimization_barrier(_matmul(a, b, -2, -2)), -1, -2)


def _exp_scores(q, k, visible, bias):
    """The softmax of q k^T (+ bias, masked) over keys, unnormalised.

    Returns (exp(scores - row max), its row sums, whether the row sees any key): float32
    (..., q_len, k_len), float32 (..., q_len, 1), bool (..., q_len, 1). In a row that sees a key
    every masked entry is exactly 0 (exp(_MASKED - max) underflows); a row that sees none has all
    its scores at _MASKED (plus at most a bias) and is told by its maximum.
    """
    scores = _matmul(q, k, -1, -1)
    if bias is not None:
        scores = scores + bias.astype(jnp.float32)
    if visible is not None:
        scores = jnp.where(visible, scores, _MASKED)
    top = jnp.max(scores, axis=-1, keepdims=True)
    e = jnp.exp(scores - top)
    return e, jnp.sum(e, axis=-1, keepdims=True), top > 0.5 * _MASKED


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def _softmax_attention(q, k, v, bias, bias_meta, visible):
    """softmax(q k^T + bias, masked) v over the last two axes, 0 in rows with no visible key;
    see `_attend` (visible: None or bool, the last argument: it has no gradient).

    The gradient is written out (FlashAttention's backward, from the stored unnormalised
    probabilities) so that each product runs in the operand layout the CPU backend is fastest
    with: local attention's fwd+bwd at the LRA Text shape (batch 4, 4K tokens, 4 heads of 32)
    ran 1.3x faster than with autodiff's gradient on the 2-core CI machine.
    """
    return _softmax_attention_fwd(q, k, v, bias, bias_meta, visible)[0]


def _softmax_attention_fwd(q, k, v, bias, bias_meta, visible):
    e, total, has_key = _exp_scores(q, k, visible, bias)
    # Normalised after the product: a (q_len, head_dim) division, not a (q_len, k_len) one.
    out = _matmul(e.astype(v.dtype), v, -1, -2) / total
    out = jnp.where(has_key, out, 0.0).astype(q.dtype)
    return out, (q, k, v, e, total, has_key, out)


def _softmax_attention_bwd(bias_meta, residuals, d_out):
    q, k, v, e, total, has_key, out = residuals
    # A row with no visible key has uniform probabilities over masked keys and a constant 0
    # output: its cotangent is dropped, so nothing reaches q, k, v or the bias through it.
    d_out = jnp.where(has_key, d_out, jnp.zeros((), d_out.dtype))
    probs = e * (1.0 / total)
    d_probs = _matmul(d_out, v, -1, -1)  # (..., q_len, k_len)
    # softmax backward: d_scores = p * (d_p - sum_k p d_p), and sum_k p d_p = d_out . out
    row = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1, keepdims=True)
    d_scores = probs * (d_probs - row)  # masked entries: p == 0
    dq = _matmul(d_scores.astype(k.dtype), k, -1, -2).astype(q.dtype)
    dk = _transposed_product(q, d_scores.astype(q.dtype)).astype(k.dtype)
    dv = _transposed_product(d_out, probs.astype(d_out.dtype)).astype(v.dtype)
    d_bias = None
    if bias_meta is not None:
        shape, dtype = bias_meta
        d_bias = _sum_to_shape(d_scores, shape).astype(dtype)
    return dq, dk, dv, d_bias, None


_softmax_attention.defvjp(_softmax_attention_fwd, _softmax_attention_bwd)


def _heads_major(x: Array) -> Array:
    """(..., length, heads, head_dim) <-> (..., heads, length, head_dim)."""
    return jnp.swapaxes(x, -3, -2)


def _attend(q: Array, k: Array, v: Array, visible: Array | None, bias: Array | None,
            scale: float | None) -> Array:
    """Masked softmax attention over arbitrary leading axes `...` (batch, heads, blocks, ...).

    Heads-major: the matrix products are then plain batched products over contiguous leading
    axes (the blocked local attention ran 1.5x faster this way on the CPU than with heads after
    the length).

    Args:
      q: (..., q_len, head_dim) queries; the leading axes include the heads.
      k, v: (..., k_len, head_dim) keys and values.
      visible: None (everything visible) or bool, broadcastable to (..., q_len, k_len); True
        where the query may see the key.
      bias: None or float, broadcastable to (..., q_len, k_len); added to the scores. It may
        hold _MASKED entries: a static window is cheapest as part of the bias.
      scale: multiplier applied to q; None means head_dim ** -0.5.

    Returns:
      (..., q_len, head_dim) in q.dtype; exactly 0 in the rows with no visible key, and every
      masked entry gets exactly zero weight.
    """
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(f"q, k, v need the same leading axes, got {q.shape}, {k.shape}, {v.shape}")
    bias_meta = None if bias is None else (tuple(bias.shape), bias.dtype)
    return _softmax_attention(q * jnp.asarray(scale, q.dtype), k, v, bias, bias_meta, visible)


def _pad_axis(x: Array, axis: int, before: int, after: int, value: Any = 0) -> Array:
    """Pads one axis of `x` with `before` / `after` entries equal to `value`."""
    widths = [(0, 0)] * x.ndim
    widths[axis] = (before, after)
    return jnp.pad(x, widths, constant_values=value)


def _key_valid(mask: Array | None, batch: int, length: int) -> Array:
    """(batch, length) bool key-validity array: the mask, or all True when there is none."""
    if mask is None:
        return jnp.ones((batch, length), bool)
    return jnp.asarray(mask, bool)


def full_attention(q: Array, k: Array, v: Array, *, causal: bool = False, mask: Array | None = None,
                   bias: Array | None = None, scale: float | None = None) -> Array:
    """Ordinary (quadratic) attention.

    Args:
      q: (batch, q_len, heads, head_dim); k, v: (batch, k_len, heads, head_dim).
      causal: if True, query i sees only keys j <= i.
      mask: optional (batch, k_len) bool, True for real key tokens.
      bias: optional float, broadcastable to (batch, heads, q_len, k_len).
      scale: q multiplier; default head_dim ** -0.5.

    Returns:
      (batch, q_len, heads, head_dim) in q.dtype.
    """
    q_len, k_len = q.shape[1], k.shape[1]
    visible = None if mask is None else jnp.asarray(mask, bool)[:, None, None, :]  # (B, 1, 1, k)
    if causal:
        tril = jnp.tril(jnp.ones((q_len, k_len), bool))
        visible = tril if visible is None else visible & tril
    out = _attend(_heads_major(q), _heads_major(k), _heads_major(v), visible, bias,
                  scale)  # (batch, heads, q_len, head_dim)
    return _heads_major(out)


def local_attention(q: Array, k: Array, v: Array, *, radius: int, causal: bool = False,
                    mask: Array | None = None, bias: Array | None = None,
                    scale: float | None = None) -> Array:
    """Sliding-window attention, blocked as in LongT5; O(length * radius) time and memory.

    Query i sees key j iff mask[j] and |i - j| <= radius (and j <= i when causal). The padded
    sequence is cut into blocks of `radius + 1` positions; each query block attends to the keys of
    its previous, own and next block (previous and own only when causal), and a static mask keeps
    exactly the window. No (length, length) array is ever built.

    Args:
      q, k, v: (batch, length, heads, head_dim).
      radius: window half-width (>= 0).
      causal: if True, also require j <= i.
      mask: optional (batch, length) bool, True for real key tokens.
      bias: optional (heads, 2 * radius + 1) relative-offset table; entry [h, r] is added to the
        score of offset j - i = r - radius (see `RelativePositionBias.offsets`).
      scale: q multiplier; default head_dim ** -0.5.

    Returns:
      (batch, length, heads, head_dim) in q.dtype.
    """
    batch, length, heads, head_dim = q.shape
    w = radius + 1  # block length
    nb = -(-length // w)  # number of blocks
    pad = nb * w - length
    n_ctx = 2 if causal else 3  # key blocks per query block: previous, own (, next)

    def key_windows(x):  # (batch, heads, length, ...) -> (batch, heads, nb, n_ctx * w, ...)
        x = _pad_axis(x, 2, w, pad + w, value=0)  # one extra block each side
        x = x.reshape(*x.shape[:2], nb + 2, w, *x.shape[3:])
        return jnp.concatenate([x[:, :, i:i + nb] for i in range(n_ctx)], axis=3)

    # Heads-major blocks: q (batch, heads, nb, w, head_dim); keys (batch, heads, nb, n_ctx*w, .).
    qb = _pad_axis(_heads_major(q), 2, 0, pad).reshape(batch, heads, nb, w, head_dim)
    kb, vb = key_windows(_heads_major(k)), key_windows(_heads_major(v))

    # Query a of block n sits at n*w + a; key c of its window at (n-1)*w + c: offset c - w - a.
    offset = np.arange(n_ctx * w)[None, :] - w - np.arange(w)[:, None]  # (w, n_ctx*w), static
    in_window = (np.abs(offset) <= radius) & ((offset <= 0) if causal else True)
    # The window is part of the additive bias: (heads or 1, w, n_ctx*w), _MASKED outside it.
    if bias is not None:
        if bias.shape != (heads, 2 * radius + 1):
            raise ValueError(f"local bias must be (heads, 2 * radius + 1), got {bias.shape}")
        index = np.clip(offset + radius, 0, 2 * radius)  # out-of-window entries are masked anyway
        table = jnp.where(in_window, bias.astype(jnp.float32)[:, index], _MASKED)
    else:
        table = jnp.asarray(np.where(in_window, 0.0, _MASKED), jnp.float32)[None]
    table = table[:, None]  # (heads or 1, 1, w, n_ctx*w): broadcasts over (batch, ., nb)

    # Keys: the window's padding (before the start, after the end) is never visible; the mask's
    # padding only when a mask is given. Queries without any visible key give exactly 0.
    valid = key_windows(_key_valid(mask, batch, length)[:, None])[:, 0]  # (batch, nb, n_ctx*w)
    visible = valid[:, None, :, None, :]  # (batch, 1, nb, 1, n_ctx*w)
    out = _attend(qb, kb, vb, visible, table, scale)  # (batch, heads, nb, w, head_dim)
    out = out.reshape(batch, heads, nb * w, head_dim)[:, :, :length]
    return _heads_major(out)


def chunk_attention(q: Array, k: Array, v: Array, *, chunk: int, causal: bool = False,
                    mask: Array | None = None, scale: float | None = None) -> Array:
    """Attention within non-overlapping chunks (MEGA-chunk style): no attention across borders.

    Query i sees key j iff mask[j] and i // chunk == j // chunk (and j <= i when causal). Chunks
    are reshaped into the batch axis and handed to `full_attention`.

    Args:
      q, k, v: (batch, length, heads, head_dim).
      chunk: chunk length.
      causal: if True, also require j <= i.
      mask: optional (batch, length) bool, True for real key tokens.
      scale: q multiplier; default head_dim ** -0.5.

    Returns:
      (batch, length, heads, head_dim) in q.dtype.
    """
    return in_chunks(partial(full_attention, causal=causal, scale=scale), q, k, v, chunk=chunk,
                     mask=mask)


def in_chunks(attend: Callable[..., Array], q: Array, k: Array, v: Array, *, chunk: int,
              mask: Array | None) -> Array:
    """Runs `attend(q, k, v, mask=...)` on each chunk of `chunk` positions, the chunks reshaped
    into the batch axis (the last chunk padded with keys marked invalid).

    Args:
      attend: an attention over (batch', chunk, heads, head_dim) taking a (batch', chunk) key mask.
      q, k, v: (batch, length, heads, head_dim).
      chunk: chunk length.
      mask: optional (batch, length) bool, True for real key tokens.

    Returns:
      (batch, length, heads, head_dim), what `attend` gives on each chunk.
    """
    batch, length = q.shape[:2]
    nc = -(-length // chunk)
    pad = nc * chunk - length

    def to_chunks(x, value=0):  # (batch, length, ...) -> (batch * nc, chunk, ...)
        return _pad_axis(x, 1, 0, pad, value).reshape(batch * nc, chunk, *x.shape[2:])

    valid = to_chunks(_key_valid(mask, batch, length), value=False)  # (batch*nc, chunk)
    out = attend(to_chunks(q), to_chunks(k), to_chunks(v), mask=valid)
    return out.reshape(batch, nc * chunk, *out.shape[2:])[:, :length]


@dataclasses.dataclass(frozen=True)
class AttentionKind:
    """One kind of attention: which keys each query sees, and what follows from that. Each is
    an entry of the mixer registry (spade_jax.model.families), which passes it to the modules;
    a new kind is one entry plus its kernel.

    name: the mixer kind ('window', 'chunk', 'full', ...).
    window(cfg) -> (left, right): query i sees keys i - left .. i + right (None: unbounded on
      that side), within its chunk when `chunk` gives one. The accelerator kernels
      (spade_jax.model.attention_accel) run from this and `chunk` alone.
    chunk(cfg) -> the length of the chunks that confine queries and keys, or None.
    blocked(q, k, v, cfg, mask, bias) -> (batch, length, heads, head_dim): the portable kernel.
    keys(cfg, length) -> the keys each query is scored against by `blocked` (FLOP counts).
    cache(cfg) -> the slots of its decoding cache (see `decode_slots`).
    bias(cfg) -> the form of the shared relative-position bias it takes when position is
      'relative': 'dense' ((1, heads, L, L); decoding: offsets up to max_len - 1), 'window'
      ((heads, 2 * radius + 1) offsets), or None.
    """

    name: str
    window: Callable[[Any], tuple]
    chunk: Callable[[Any], int | None]
    blocked: Callable[..., Array]
    keys: Callable[[Any, int], int]
    cache: Callable[[Any], int]
    bias: Callable[[Any], str | None]

    def decode_slots(self, cfg) -> str:
        """How its decoding cache holds positions (`ring_positions`): 'chunk' (the current
        chunk), 'grow' (every position from 0: the cache bounds the text) or 'ring' (the last
        `cache` positions)."""
        if self.chunk(cfg) is not None:
            return "chunk"
        return "grow" if self.window(cfg)[0] is None else "ring"


def ring_positions(index: Array, size: int, slots_kind: str) -> tuple[Array, Array]:
    """Decoding caches: the position held by each of `size` cache slots once the token at
    position `index` has been written, and whether the query at `index` may see it.

    slots_kind 'ring': a ring buffer (slot = position % size) holding the last `size`
    positions (window attention: radius + 1); 'chunk': the slots of the current chunk (slot =
    position % chunk); 'grow': slot = position (a preallocated cache of every position, full
    attention). Returns (positions (size,) int32, visible (size,) bool).
    """
    slots = jnp.arange(size, dtype=jnp.int32)
    if slots_kind == "ring":
        positions = index - (index - slots) % size
        return positions, positions >= 0
    if slots_kind == "chunk":
        return index - index % size + slots, slots <= index % size
    if slots_kind != "grow":
        raise ValueError(f"slots_kind must be 'ring', 'chunk' or 'grow', got {slots_kind!r}")
    return slots, slots <= index


def attend_cache(q: Array, keys: Array, values: Array, visible: Array, bias: Array | None = None,
                 scale: float | None = None) -> Array:
    """One decoding step of attention against a cache.

    Args:
      q: (batch, 1, heads, head_dim), the newest token's query.
      keys, values: (batch, slots, heads, head_dim), the cache (the newest token included).
      visible: (slots,) bool, which slots the query sees.
      bias: optional (heads, slots), added to the scores.
      scale: q multiplier; default head_dim ** -0.5.

    Returns:
      (batch, 1, heads, head_dim) in q.dtype, as the parallel kernels give for that query.
    """
    out = _attend(_heads_major(q), _heads_major(keys), _heads_major(values),
                  visible[None, None, None, :], None if bias is None else bias[None, :, None, :],
                  scale)  # (batch, heads, 1, head_dim)
    return _heads_major(out)


def relative_position_bucket(relative_position: Array, *, bidirectional: bool, num_buckets: int = 32,
                             max_distance: int = 128) -> Array:
    """T5 / LongT5 relative-position buckets.

    Args:
      relative_position: int array of key_position - query_position, any shape. A numpy array
        is bucketed on the host in numpy (float32, as XLA does; equal over +-2M offsets for the
        configs in use, tests/attention): the model's tables and the flash kernel's bias runs
        are then one constant, whatever device the program is for.
      bidirectional: if True, half the buckets are for positive offsets (keys after the query) and
        half for negative; if False (causal), only offsets <= 0 are distinguished and every future
        offset falls into bucket 0.
      num_buckets: total number of buckets.
      max_distance: distances >= this share the last bucket (of their sign).

    Returns:
      int32 array of bucket ids in [0, num_buckets), same shape as `relative_position` (numpy
      for a numpy input).
    """
    xp = np if isinstance(relative_position, np.ndarray) else jnp
    n = -xp.asarray(relative_position, np.int32)
    ret = xp.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        ret = ret + (n < 0).astype(np.int32) * num_buckets
        n = xp.abs(n)
    else:
        n = xp.maximum(n, 0)
    # Half the buckets are exact offsets; the rest are log-spaced up to max_distance.
    max_exact = num_buckets // 2
    is_small = n < max_exact
    large = max_exact + (
        xp.log(n.astype(np.float32) / np.float32(max_exact) + np.finfo(np.float32).eps)
        / np.float32(np.log(max_distance / max_exact))
        * np.float32(num_buckets - max_exact)).astype(np.int32)
    large = xp.minimum(large, num_buckets - 1)
    return ret + xp.where(is_small, n, large)


class RelativePositionBias(nn.Module):
    """Learned T5 bucketed relative-position bias, one scalar per (bucket, head).

    `__call__` / `dense` give the dense bias for `full_attention`; `offsets` gives the per-offset
    table for `local_attention`. Computed once per model and shared by all layers (by the caller).
    """

    num_heads: int
    num_buckets: int = 32
    max_distance: int = 128
    bidirectional: bool = True
    dtype: Any = jnp.float32
    embedding_init: Callable[..., Array] = nn.initializers.normal(stddev=0.02)

    def setup(self):
        # (num_buckets, num_heads), float32 parameter.
        self.embedding = self.param(
            "embedding", nn.with_logical_partitioning(self.embedding_init, (axes.RELPOS_BUCKETS, axes.HEADS)),
            (self.num_buckets, self.num_heads), jnp.float32)

    def _lookup(self, relative_position: Array) -> Array:
        """(...) int key - query offsets -> (..., num_heads) bias values in self.dtype."""
        buckets = relative_position_bucket(relative_position, bidirectional=self.bidirectional,
                                           num_buckets=self.num_buckets, max_distance=self.max_distance)
        return jnp.take(self.embedding, buckets, axis=0).astype(self.dtype)

    def dense(self, q_length: int, k_length: int) -> Array:
        """(1, heads, q_length, k_length) bias; entry [0, h, i, j] is for offset j - i."""
        # Look up the q_length + k_length - 1 distinct offsets, then expand with a gather whose
        # indices are built by iota at run time: a (q_length, k_length) numpy constant would be
        # embedded in the program and constant-folded (minutes of compilation at L = 16K).
        table = self._lookup(np.arange(-(q_length - 1), k_length)).T  # (heads, q_len + k_len - 1)
        shape = (q_length, k_length)
        index = (jax.lax.broadcasted_iota(jnp.int32, shape, 1)
                 - jax.lax.broadcasted_iota(jnp.int32, shape, 0) + (q_length - 1))
        return jnp.take(table, index, axis=1)[None]

    def offsets(self, radius: int) -> Array:
        """(heads, 2 * radius + 1) table; entry [h, r] is the bias for offset j - i = r - radius."""
        return self._lookup(np.arange(-radius, radius + 1)).T

    def __call__(self, q_length: int, k_length: int) -> Array:
        """Same as `dense`."""
        return self.dense(q_length, k_length)
