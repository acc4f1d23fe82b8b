"""Accelerator attention kernels behind `ModelConfig.attention_impl`, with the semantics of the
portable blocked kernels in spade_jax.model.attention ('blocked'; 'auto' picks per layer and
platform, see `resolve`).

  'flash'   TPU: the Pallas kernels of spade_jax.model.attention_flash, which take the window
            form of the T5 relative-position bias (SPADE's recipes). Window, chunk and full
            attention, bidirectional or causal.

  'splash'  TPU: Pallas splash attention (jax.experimental.pallas.ops.tpu.splash_attention) with a
            LocalMask of the window; it skips the blocks the mask leaves empty. Window, chunk and
            full attention, bidirectional or causal.
  'cudnn'   GPU: cuDNN fused attention (jax.nn.dot_product_attention(implementation='cudnn')),
            whose sliding window is left-only: causal window, chunk and full attention only,
            bfloat16 / float16, head_dim a multiple of 8 up to 128 (256 on Hopper).

Conventions as in spade_jax.model.attention: q, k, v (batch, length, heads, head_dim); mask (batch,
length) bool, True for real key tokens; q scaled by `scale` (default head_dim ** -0.5) in q's
dtype; the output has q's dtype, and a query that sees no key gets exactly zero.

Splash and cuDNN take no additive score bias (splash has none; cuDNN's is a dense (length,
length) array, the quadratic memory these kernels exist to avoid), so the T5 relative-position
bias is not supported there: ModelConfig refuses them with position='relative' wherever an
attention layer would take the bias, and 'flash' where a layer would take it dense.

Padding masks:
  * splash: exact for any mask. Key validity goes in as segment ids (queries 0; keys 0 if real,
    1 if padding); the sequence is padded to a multiple of the block size with padding keys;
    rows that see no key are zeroed afterwards (the kernel would average the masked values).
  * cudnn: cuDNN takes padding only as per-row lengths (a boolean mask becomes a dense bias), so
    each row's mask is read as a real prefix followed by padding: keys and queries from the
    first padding token on are treated as padding (padded queries get zero). This is exact for
    the real tokens of suffix-padded rows (what the LM and LRA pipelines produce); a row with a
    real token after a padding token would lose the keys after the gap.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.pallas.ops.tpu import splash_attention as splash

from spade_jax.model import attention, attention_flash, platform
from spade_jax.model.platform import kernel_shard_specs

Array = jax.Array

# Splash tiles: the kernel needs block sizes that are multiples of 128 (TPU lanes); the sequence
# is padded to a multiple of the block.
SPLASH_BLOCK = 128
# How splash runs when `interpret` is not given: None compiles the Pallas kernel on a TPU and
# refuses other backends; True runs it in the Pallas interpreter on any backend (slow: tests).
SPLASH_INTERPRET: bool | None = None


def has_visible_key(valid: Array, window: tuple[int | None, int | None]) -> Array:
    """(batch, length) bool: whether query i sees at least one valid key j with
    i - left <= j <= i + right, from running sums of `valid` (batch, length) bool; O(length)."""
    left, right = window
    length = valid.shape[1]
    counts = jnp.pad(jnp.cumsum(valid.astype(jnp.int32), axis=1), ((0, 0), (1, 0)))
    i = np.arange(length)
    lo = np.zeros(length, int) if left is None else np.maximum(i - left, 0)
    hi = np.full(length, length - 1) if right is None else np.minimum(i + right, length - 1)
    return counts[:, hi + 1] - counts[:, lo] > 0


def resolve(impl: str, bias: str | None) -> str:
    """The kernel a layer runs for model.attention_impl `impl`: `impl` itself, except 'auto',
    which where the traced program is for a TPU picks 'flash' for a layer that takes the
    window form of the relative-position bias (`bias` 'window', AttentionKind.bias), 'splash'
    for one that takes none, and 'blocked' otherwise (a dense bias; any other platform). The
    choice rests on XLA's TPU compile report (docs/tpu.md, docs/benchmarks.md) until a TPU
    measures it."""
    if impl != "auto" or platform.target_platform() != "tpu":
        return "blocked" if impl == "auto" else impl
    return {None: "splash", "window": "flash"}.get(bias, "blocked")


def _splash_kernel(length: int, heads: int, window: tuple, block: int, interpret: bool):
    """The splash MHA kernel for one (length, heads, window, block): a FullMask, CausalMask or
    LocalMask per head. Made in each trace that asks (its block tables become constants of that
    trace; made eagerly and cached, they were arrays on the default device, which fails when a
    program is traced for other devices, e.g. a TPU topology compiled from a CPU host); the
    mask's processing into those tables, in numpy, is cached by splash itself."""
    shape = (length, length)
    if window == (None, None):  # LocalMask's function would build a numpy constant in the kernel
        head_mask = splash.FullMask(shape)
    elif window == (None, 0):
        head_mask = splash.CausalMask(shape)
    else:
        head_mask = splash.LocalMask(shape, window, offset=0)
    mask = splash.MultiHeadMask([head_mask] * heads)
    sizes = splash.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                              block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                              block_q_dq=block, block_kv_dq=block)
    return splash.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1,
                                  interpret=interpret)


def splash_attention(q: Array, k: Array, v: Array, *, window: tuple[int | None, int | None],
                     mask: Array | None = None, scale: float | None = None,
                     block: int = SPLASH_BLOCK, interpret: bool | None = None) -> Array:
    """Windowed attention through Pallas splash attention (TPU).

    Query i sees key j iff mask[j] and i - left <= j <= i + right (window = (left, right), None
    for unbounded), as `spade_jax.model.attention.local_attention` with (radius, radius) / (radius, 0)
    and `full_attention` with (None, None) / (None, 0).

    Args:
      q, k, v: (batch, length, heads, head_dim).
      window: (left, right) key window.
      mask: optional (batch, length) bool, True for real key tokens (any pattern).
      scale: q multiplier; default head_dim ** -0.5.
      block: the kernel's query and key tile (a multiple of 128); length is padded up to it.
      interpret: run in the Pallas interpreter; None: `SPLASH_INTERPRET` (by default: compiled on
        a TPU, an error elsewhere).

    Returns:
      (batch, length, heads, head_dim) in q.dtype; rows with no visible key are exactly 0.
    """
    interpret = platform.pallas_interpret(
        "splash", SPLASH_INTERPRET if interpret is None else interpret)
    if block < 128 or block % 128:
        raise ValueError(f"splash block must be a positive multiple of 128, got {block}")
    valid = attention._key_valid(mask, q.shape[0], q.shape[1])
    local = partial(_splash_local, window=tuple(window), scale=scale, block=block,
                    interpret=interpret)
    specs = kernel_shard_specs(q.shape)
    if specs is None:
        return local(q, k, v, valid)
    heads, rows = specs
    # check_vma off: the Pallas kernel's outputs do not declare how they vary over the mesh
    return jax.shard_map(local, mesh=jax.sharding.get_abstract_mesh(),
                         in_specs=(heads, heads, heads, rows), out_specs=heads,
                         check_vma=False)(q, k, v, valid)


def _splash_local(q, k, v, valid, *, window, scale, block, interpret):
    """`splash_attention` on one device's examples and heads; valid: (batch, length) bool."""
    batch, length, heads, head_dim = q.shape
    padded = -(-length // block) * block
    pad = padded - length
    valid = attention._pad_axis(valid, 1, 0, pad, False)
    scale = head_dim ** -0.5 if scale is None else scale
    q = q * jnp.asarray(scale, q.dtype)

    def heads_major(x):  # (batch, length, heads, d) -> (batch, heads, padded, d)
        return jnp.swapaxes(attention._pad_axis(x, 1, 0, pad), 1, 2)

    kernel = _splash_kernel(padded, heads, window, block, interpret)
    segments = splash.SegmentIds(q=jnp.zeros((batch, padded), jnp.int32),
                                 kv=(~valid).astype(jnp.int32))
    out = jax.vmap(lambda q1, k1, v1, s1: kernel(q1, k1, v1, segment_ids=s1))(
        heads_major(q), heads_major(k), heads_major(v), segments)
    out = jnp.swapaxes(out, 1, 2)[:, :length]  # (batch, length, heads, head_dim)
    seen = has_visible_key(valid, window)[:, :length, None, None]
    return jnp.where(seen, out, 0).astype(q.dtype)


def cudnn_arguments(*, window: tuple[int | None, int | None],
                    mask: Array | None = None, scale: float | None = None) -> dict:
    """Keyword arguments of `jax.nn.dot_product_attention` for a causal (left-only) window.

    cuDNN supports only a left window (right = 0, with is_causal); local_window_size=(left, 0)
    gives keys i - left <= j <= i (cuDNN's sliding window of left + 1). A mask becomes per-row
    lengths: the number of real tokens before the first padding token (see the module
    docstring), for queries and keys alike.
    """
    left, right = window
    if right != 0:
        raise ValueError(f"cuDNN attention takes only a causal (left-only) window; got window "
                         f"{window} (use attention_impl 'splash' or 'blocked' for bidirectional "
                         "attention)")
    args = dict(is_causal=True, scale=scale,
                local_window_size=None if left is None else (left, 0))
    if mask is not None:
        prefix = jnp.sum(jnp.cumprod(jnp.asarray(mask, jnp.int32), axis=1), axis=1)
        args.update(query_seq_lengths=prefix.astype(jnp.int32),
                    key_value_seq_lengths=prefix.astype(jnp.int32))
    return args


def cudnn_attention(q: Array, k: Array, v: Array, *, window: tuple[int | None, int | None],
                    mask: Array | None = None, scale: float | None = None) -> Array:
    """Causal windowed attention through cuDNN fused attention (GPU).

    Args:
      q, k, v: (batch, length, heads, head_dim), bfloat16 or float16, head_dim a multiple of 8.
      window: (left, 0): keys i - left <= j <= i; (None, 0): all keys j <= i.
      mask: optional (batch, length) bool, read as a real prefix (see the module docstring).
      scale: q multiplier; default head_dim ** -0.5.

    Returns:
      (batch, length, heads, head_dim) in q.dtype; queries from the first padding token on are 0.
    """
    backend = platform.target_platform()
    if backend != "gpu":
        raise RuntimeError(f"attention_impl='cudnn' needs a GPU (the JAX backend is {backend!r}); "
                           "use attention_impl='blocked'")
    if q.dtype not in (jnp.bfloat16, jnp.float16):
        raise ValueError(f"attention_impl='cudnn' takes bfloat16 or float16, got {q.dtype} "
                         "(set model.dtype='bfloat16')")
    args = cudnn_arguments(window=window, mask=mask, scale=scale)
    out = jax.nn.dot_product_attention(q, k, v, implementation="cudnn", **args)
    if mask is not None:
        real = jnp.arange(q.shape[1])[None, :] < args["query_seq_lengths"][:, None]
        out = jnp.where(real[:, :, None, None], out, 0)
    return out.astype(q.dtype)


def attend(impl: str, window: tuple[int | None, int | None], q: Array, k: Array, v: Array, *,
           chunk: int | None = None, mask: Array | None = None, scale: float | None = None,
           bias: Array | None = None, starts: tuple[int, ...] | None = None) -> Array:
    """Attention through an accelerator kernel (`impl` 'flash', 'splash' or 'cudnn') with the
    visibility of an attention kind (spade_jax.model.attention.AttentionKind): query i sees keys
    i - left .. i + right (window = (left, right), None unbounded), within chunks of `chunk`
    positions when given (the chunks reshaped into the batch axis,
    spade_jax.model.attention.in_chunks). `bias` (heads, runs) with its run `starts`: the
    relative-position bias, taken by 'flash' alone (spade_jax.model.attention_flash)."""
    if bias is not None and impl != "flash":
        raise ValueError(f"attention impl {impl!r} takes no relative-position bias")
    if impl == "flash":
        fn = partial(attention_flash.flash_attention, window=window, scale=scale, bias=bias,
                     starts=starts)
    elif impl == "splash":
        fn = partial(splash_attention, window=window, scale=scale)
    elif impl == "cudnn":
        fn = partial(cudnn_attention, window=window, scale=scale)
    else:
        raise ValueError(f"attention impl must be 'flash', 'splash' or 'cudnn' here, got {impl!r}")
    if chunk is not None:
        return attention.in_chunks(fn, q, k, v, chunk=chunk, mask=mask)
    return fn(q, k, v, mask=mask)
