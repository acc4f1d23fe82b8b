"""Flash-style windowed attention for TPU in Pallas, with a relative-position bias computed in
the kernel: `model.attention_impl='flash'`.

The scores never leave the chip: each grid step loads one (block, head_dim) tile of queries and
one of keys and values, scores them, adds the bias and the masks, and folds the tile into a
running softmax (FlashAttention). Only the key tiles that meet a query tile's window are
visited: at radius 255 and the default tile of 256, three key tiles (768 keys) per query tile,
as many as the blocked kernel scores, but none of the scores is written to HBM, where the
blocked kernel writes every one and reads it back, forward and backward. (Tiles of 128 visit
five key tiles, 640 keys, but fetch each key tile five times: on Path-X's compiled step the
256 tile moved 6% fewer bytes, docs/benchmarks.md.)

The bias is any function of the offset d = key position - query position that is constant on
runs of offsets: the T5 bucketed bias is (one run per bucket, `bucket_runs`). The kernel takes
the run boundaries as static offsets and the per-run values (heads, runs) in SMEM, and builds each
(block, block) bias tile from the offsets by comparisons: no (length, length) or per-offset
array is ever built, and the values' gradient is summed per run inside the backward kernel.

Conventions as in spade_jax.model.attention: q, k, v (batch, length, heads, head_dim); mask
(batch, length) bool, True for real key tokens; q scaled by `scale` (default head_dim ** -0.5) in
q's dtype; scores and softmax in float32; the output has q's dtype, and a query that sees no key
gets exactly zero (with finite gradients).

Three kernels: the forward (per query tile, over its key tiles; it also writes each query's
log-sum-exp for the backward), dq (per query tile, over its key tiles; also the bias values'
gradient) and dk/dv (per key tile, over the query tiles that see it, with the scores
transposed so that the query statistics broadcast along lanes). Under a mesh the kernels run in
`jax.shard_map` over batch and heads (a Mosaic kernel cannot be partitioned by XLA).
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from spade_jax.model import attention, platform

Array = jax.Array

LANES = 128  # TPU vector lanes: tiles are multiples of it; the width of the bias gradient's rows
# How the kernels run when `interpret` is not given: None compiles them for a TPU (Mosaic) and
# refuses other backends; True runs them in the Pallas interpreter on any backend (tests).
INTERPRET: bool | None = None
_MASKED = attention._MASKED
_NO_KEY = 1e30  # the log-sum-exp of a query row that sees no key: exp(s - _NO_KEY) == 0


def bucket_runs(radius: int, *, bidirectional: bool, num_buckets: int,
                max_distance: int) -> tuple[int, ...]:
    """The offsets d in (-radius, radius] at which the T5 bucket of d (see
    `attention.relative_position_bucket`) differs from that of d - 1: the starts of the runs
    after the first, ascending. Entry r of a run-value row is the bias of offsets
    [starts[r-1], starts[r]) (starts[-1] = -radius, starts[len] = radius + 1)."""
    offsets = np.arange(-radius, radius + 1)
    buckets = attention.relative_position_bucket(offsets, bidirectional=bidirectional,
                                                 num_buckets=num_buckets, max_distance=max_distance)
    return tuple(int(d) for d in offsets[1:][buckets[1:] != buckets[:-1]])


def run_values(table: Array, starts: tuple[int, ...]) -> Array:
    """(heads, 2 * radius + 1) per-offset table (entry [h, r]: offset r - radius) -> (heads,
    len(starts) + 1) per-run values: each run's value read at its first offset (the table is
    constant on a run, so the gradient reaches the table through that one entry per run)."""
    radius = (table.shape[1] - 1) // 2
    first = np.array([-radius, *starts]) + radius
    return table[:, first]


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What the kernels are compiled for: tile `block`; `nb` tiles of the padded length; the key
    window (left, right) (None: unbounded); run starts; and for each query tile the key tiles
    first(qi) = qi - before .. qi + after (clamped to [0, nb)), `steps` of them."""

    block: int
    nb: int
    window: tuple
    starts: tuple
    interpret: bool

    @property
    def before(self) -> int:  # key tiles before a query tile that may hold visible keys
        left = self.window[0]
        return self.nb - 1 if left is None else min(self.nb - 1, -(-left // self.block))

    @property
    def after(self) -> int:  # key tiles after it
        right = self.window[1]
        return self.nb - 1 if right is None else min(self.nb - 1, (self.block - 1 + right) // self.block)

    @property
    def steps(self) -> int:
        return min(self.before + self.after + 1, 2 * self.nb - 1)

    def partner(self, i, t):
        """(the other tile's index, whether it is in range) at step t of tile i; the same
        relation serves query tile -> key tiles (forward, dq) and, with before and after
        swapped, key tile -> query tiles (dk/dv)."""
        j = i - self.before + t
        return j, (j >= 0) & (j < self.nb) & (j <= i + self.after)

    def swapped(self) -> "_Plan":
        left, right = self.window
        return dataclasses.replace(self, window=(right, left))


def _visible(plan: _Plan, d: Array) -> Array:
    """Whether offset d = key - query lies in the window."""
    left, right = plan.window
    ok = jnp.ones(d.shape, bool)
    if left is not None:
        ok = ok & (d >= -left)
    if right is not None:
        ok = ok & (d <= right)
    return ok


def _bias_tile(plan: _Plan, vals_ref, head, d: Array) -> Array:
    """The bias of every offset in d: the value of the run it falls in (float32)."""
    bias = jnp.full(d.shape, vals_ref[head, 0], jnp.float32)
    for r, start in enumerate(plan.starts, 1):
        bias = jnp.where(d >= start, vals_ref[head, r], bias)
    return bias


def _scores(plan: _Plan, vals_ref, head, q: Array, k: Array, qi, kj) -> tuple[Array, Array]:
    """The (keys, queries) scores of key tile kj against query tile qi, bias added (float32),
    and their offsets d = key position - query position. q, k: (head_dim, block) tiles."""
    s = _dot(k, q, _TN)
    shape = (plan.block, plan.block)
    d = ((kj - qi) * plan.block + jax.lax.broadcasted_iota(jnp.int32, shape, 0)
         - jax.lax.broadcasted_iota(jnp.int32, shape, 1))
    if plan.starts is not None:
        s = s + _bias_tile(plan, vals_ref, head, d)
    return s, d


def _key_column(valid_ref) -> Array:
    """The (1, block) key-validity row of a tile as a (block, 1) bool column."""
    return jnp.expand_dims(valid_ref[0], -1) != 0


# dot_general dimension numbers on 2-D tiles: a.T @ b, a @ b, a @ b.T
_TN = (((0,), (0,)), ((), ()))
_NN = (((1,), (0,)), ((), ()))
_NT = (((1,), (1,)), ((), ()))


def _dot(a: Array, b: Array, dims) -> Array:
    """A tile product in float32. float32 operands take JAX's configured matmul precision (as
    the blocked kernel's products do); narrower ones the MXU's native pass, the one Mosaic
    accepts for them whatever jax_default_matmul_precision says."""
    precision = None if a.dtype == jnp.float32 else jax.lax.Precision.DEFAULT
    return jax.lax.dot_general(a, b, dims, precision=precision, preferred_element_type=jnp.float32)


def _forward_kernel(vals_ref, q_ref, k_ref, v_ref, valid_ref, o_ref, lse_ref, m_ref, l_ref,
                    acc_ref, *, plan: _Plan):
    head, qi, t = pl.program_id(1), pl.program_id(2), pl.program_id(3)
    kj, in_range = plan.partner(qi, t)

    @pl.when(t == 0)
    def _():
        m_ref[...] = jnp.full(m_ref.shape, _MASKED, jnp.float32)
        l_ref[...] = jnp.zeros(l_ref.shape, jnp.float32)
        acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

    @pl.when(in_range)
    def _():
        s, d = _scores(plan, vals_ref, head, q_ref[...], k_ref[...], qi, kj)
        visible = _visible(plan, d) & _key_column(valid_ref)
        s = jnp.where(visible, s, _MASKED)
        m_prev = m_ref[...]  # (1, queries): the statistics run along the lanes
        m_next = jnp.maximum(m_prev, jnp.max(s, axis=0, keepdims=True))
        p = jnp.where(visible, jnp.exp(s - m_next), 0.0)
        alpha = jnp.exp(m_prev - m_next)
        l_ref[...] = alpha * l_ref[...] + jnp.sum(p, axis=0, keepdims=True)
        m_ref[...] = m_next
        acc_ref[...] = acc_ref[...] * alpha + _dot(v_ref[...], p.astype(v_ref.dtype), _NN)

    @pl.when(t == plan.steps - 1)
    def _():
        l = l_ref[...]
        seen = l > 0.0
        inverse = jnp.where(seen, 1.0 / jnp.where(seen, l, 1.0), 0.0)
        o_ref[...] = (acc_ref[...] * inverse).astype(o_ref.dtype)
        lse_ref[...] = jnp.where(seen, m_ref[...] + jnp.log(jnp.where(seen, l, 1.0)), _NO_KEY)


def _dq_kernel(vals_ref, q_ref, k_ref, v_ref, valid_ref, do_ref, lse_ref, di_ref, dq_ref, dvals_ref,
               dq_acc, g_acc, *, plan: _Plan):
    head, qi, t = pl.program_id(1), pl.program_id(2), pl.program_id(3)
    kj, in_range = plan.partner(qi, t)

    @pl.when(t == 0)
    def _():
        dq_acc[...] = jnp.zeros(dq_acc.shape, jnp.float32)
        g_acc[...] = jnp.zeros(g_acc.shape, jnp.float32)

    @pl.when(in_range)
    def _():
        k, v = k_ref[...], v_ref[...]
        s, d = _scores(plan, vals_ref, head, q_ref[...], k, qi, kj)
        visible = _visible(plan, d) & _key_column(valid_ref)
        p = jnp.where(visible, jnp.exp(s - lse_ref[...]), 0.0)
        dp = _dot(v, do_ref[...], _TN)
        ds = p * (dp - di_ref[...])
        dq_acc[...] += _dot(k, ds.astype(k.dtype), _NN)
        if plan.starts is not None:
            # lane r: the sum of ds over offsets >= the start of run r (lane 0: all of it)
            lane = jax.lax.broadcasted_iota(jnp.int32, g_acc.shape, 1)
            g = jnp.where(lane == 0, jnp.sum(ds), 0.0)
            for r, start in enumerate(plan.starts, 1):
                g = jnp.where(lane == r, jnp.sum(jnp.where(d >= start, ds, 0.0)), g)
            g_acc[...] += g

    @pl.when(t == plan.steps - 1)
    def _():
        dq_ref[...] = dq_acc[...].astype(dq_ref.dtype)
        dvals_ref[...] = g_acc[...]


def _dkv_kernel(vals_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, di_ref, dk_ref, dv_ref, dk_acc,
                dv_acc, *, plan: _Plan):
    """Key tile kj against the query tiles that see it. Keys' padding is not applied here (a
    padded key's own dk, dv columns are dropped by the caller; nothing else depends on them)."""
    head, kj, t = pl.program_id(1), pl.program_id(2), pl.program_id(3)
    qi, in_range = plan.swapped().partner(kj, t)

    @pl.when(t == 0)
    def _():
        dk_acc[...] = jnp.zeros(dk_acc.shape, jnp.float32)
        dv_acc[...] = jnp.zeros(dv_acc.shape, jnp.float32)

    @pl.when(in_range)
    def _():
        q, do = q_ref[...], do_ref[...]
        s, d = _scores(plan, vals_ref, head, q, k_ref[...], qi, kj)
        p = jnp.where(_visible(plan, d), jnp.exp(s - lse_ref[...]), 0.0)
        dv_acc[...] += _dot(do, p.astype(do.dtype), _NT)
        dp = _dot(v_ref[...], do, _TN)
        ds = p * (dp - di_ref[...])
        dk_acc[...] += _dot(q, ds.astype(q.dtype), _NT)

    @pl.when(t == plan.steps - 1)
    def _():
        dk_ref[...] = dk_acc[...].astype(dk_ref.dtype)
        dv_ref[...] = dv_acc[...].astype(dv_ref.dtype)


def _pairs(plan: _Plan) -> int:
    """How many (query tile, key tile) pairs in range a kernel visits per (example, head)."""
    i = np.arange(plan.nb)[:, None]
    j = i - plan.before + np.arange(plan.steps)[None, :]
    return int(np.sum((j >= 0) & (j < plan.nb) & (j <= i + plan.after)))


def _cost(plan: _Plan, q: Array, matmuls: int, once: int, per_pair: int) -> pl.CostEstimate:
    """What a kernel moves and computes, for the compiler's cost model (a Pallas call is
    otherwise counted as its operands and results alone): `once` (head_dim, length) arrays
    read or written once and `per_pair` tiles (with their (1, block) rows) fetched for every
    pair of tiles in range, `matmuls` (block, block, head_dim) products per pair."""
    batch, heads, head_dim, length = q.shape
    pairs = batch * heads * _pairs(plan)
    T, item = plan.block, q.dtype.itemsize
    moved = once * q.size * item + pairs * per_pair * (head_dim * T * item + 4 * T)
    return pl.CostEstimate(flops=pairs * matmuls * 2 * T * T * head_dim,
                           transcendentals=pairs * T * T, bytes_accessed=int(moved))


def _params():
    return pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "parallel",
                                                     "arbitrary"))


def _specs(plan: _Plan, head_dim: int, kv_side: bool) -> dict:
    """BlockSpecs over the grid (batch, heads, tile i, step t): 'own' / 'other' a (batch, heads,
    head_dim, length) tile at tile i / at its partner tile at step t (key tiles of query tile i;
    with kv_side, query tiles of key tile i), 'own_row' / 'other_row' the same of a (batch,
    heads, 1, length) row, 'keys' the partner's (batch, 1, length) key validity. A partner out
    of range maps to the nearest one in range: the tile already loaded, not fetched again."""
    T = plan.block
    relation = plan.swapped() if kv_side else plan

    def partner(i, t):
        return jnp.clip(i - relation.before + t, jnp.maximum(i - relation.before, 0),
                        jnp.minimum(i + relation.after, plan.nb - 1))

    tile, row = (None, None, head_dim, T), (None, None, 1, T)
    return {"own": pl.BlockSpec(tile, lambda b, h, i, t: (b, h, 0, i)),
            "other": pl.BlockSpec(tile, lambda b, h, i, t: (b, h, 0, partner(i, t))),
            "own_row": pl.BlockSpec(row, lambda b, h, i, t: (b, h, 0, i)),
            "other_row": pl.BlockSpec(row, lambda b, h, i, t: (b, h, 0, partner(i, t))),
            "keys": pl.BlockSpec((None, 1, T), lambda b, h, i, t: (b, 0, partner(i, t)))}


def _smem():
    return pl.BlockSpec(memory_space=pltpu.SMEM)


def _forward(plan, vals, q, k, v, valid):
    batch, heads, head_dim, length = q.shape
    T = plan.block
    spec = _specs(plan, head_dim, kv_side=False)
    return pl.pallas_call(
        partial(_forward_kernel, plan=plan),
        grid=(batch, heads, plan.nb, plan.steps),
        in_specs=[_smem(), spec["own"], spec["other"], spec["other"], spec["keys"]],
        out_specs=[spec["own"], spec["own_row"]],
        out_shape=[jax.ShapeDtypeStruct(q.shape, q.dtype),
                   jax.ShapeDtypeStruct((batch, heads, 1, length), jnp.float32)],
        scratch_shapes=[pltpu.VMEM((1, T), jnp.float32), pltpu.VMEM((1, T), jnp.float32),
                        pltpu.VMEM((head_dim, T), jnp.float32)],
        compiler_params=_params(), interpret=plan.interpret,
        cost_estimate=_cost(plan, q, matmuls=2, once=2, per_pair=2),  # q, o; k and v
        name="flash_window_fwd")(vals, q, k, v, valid)


def _backward(plan, vals, q, k, v, valid, o, lse, do):
    batch, heads, head_dim, length = q.shape
    di = jnp.sum(o.astype(jnp.float32) * do.astype(jnp.float32), axis=2, keepdims=True)
    spec = _specs(plan, head_dim, kv_side=False)
    dq, dvals = pl.pallas_call(
        partial(_dq_kernel, plan=plan),
        grid=(batch, heads, plan.nb, plan.steps),
        in_specs=[_smem(), spec["own"], spec["other"], spec["other"], spec["keys"], spec["own"],
                  spec["own_row"], spec["own_row"]],
        out_specs=[spec["own"], pl.BlockSpec((None, None, None, 1, LANES),
                                     lambda b, h, i, t: (b, h, i, 0, 0))],
        out_shape=[jax.ShapeDtypeStruct(q.shape, q.dtype),
                   jax.ShapeDtypeStruct((batch, heads, plan.nb, 1, LANES), jnp.float32)],
        scratch_shapes=[pltpu.VMEM((head_dim, plan.block), jnp.float32),
                        pltpu.VMEM((1, LANES), jnp.float32)],
        compiler_params=_params(), interpret=plan.interpret,
        cost_estimate=_cost(plan, q, matmuls=3, once=3, per_pair=2),  # q, do, dq; k and v
        name="flash_window_dq")(vals, q, k, v, valid, do, lse, di)
    spec = _specs(plan, head_dim, kv_side=True)
    dk, dv = pl.pallas_call(
        partial(_dkv_kernel, plan=plan),
        grid=(batch, heads, plan.nb, plan.steps),
        in_specs=[_smem(), spec["other"], spec["own"], spec["own"], spec["other"],
                  spec["other_row"], spec["other_row"]],
        out_specs=[spec["own"], spec["own"]],
        out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
        scratch_shapes=[pltpu.VMEM((head_dim, plan.block), jnp.float32),
                        pltpu.VMEM((head_dim, plan.block), jnp.float32)],
        compiler_params=_params(), interpret=plan.interpret,
        cost_estimate=_cost(plan, q, matmuls=4, once=4, per_pair=2),  # k, v, dk, dv; q and do
        name="flash_window_dkv")(vals, q, k, v, do, lse, di)
    tail = jnp.sum(dvals[:, :, :, 0, :vals.shape[1]], axis=(0, 2))  # (heads, runs): sums from run r on
    d_vals = tail - jnp.pad(tail[:, 1:], ((0, 0), (0, 1)))
    keep = valid[:, :, None, :] != 0  # a padding key's columns of dk, dv: not its to have
    return d_vals.astype(vals.dtype), dq, jnp.where(keep, dk, 0), jnp.where(keep, dv, 0)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(plan, vals, q, k, v, valid):
    return _forward(plan, vals, q, k, v, valid)[0]


def _flash_fwd(plan, vals, q, k, v, valid):
    o, lse = _forward(plan, vals, q, k, v, valid)
    return o, (vals, q, k, v, valid, o, lse)


def _flash_bwd(plan, residuals, do):
    vals, q, k, v, valid, o, lse = residuals
    d_vals, dq, dk, dv = _backward(plan, vals, q, k, v, valid, o, lse, do)
    return d_vals, dq, dk, dv, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def flash_attention(q: Array, k: Array, v: Array, *, window: tuple[int | None, int | None],
                    mask: Array | None = None, bias: Array | None = None,
                    starts: tuple[int, ...] | None = None, scale: float | None = None,
                    block: int = 2 * LANES, interpret: bool | None = None) -> Array:
    """Windowed attention with a run-wise relative-position bias, fused in Pallas.

    Query i sees key j iff mask[j] and i - left <= j <= i + right (window = (left, right), None
    for unbounded), as `attention.local_attention` with (radius, radius) / (radius, 0) and
    `attention.full_attention` with (None, None) / (None, 0).

    Args:
      q, k, v: (batch, length, heads, head_dim).
      window: (left, right) key window.
      mask: optional (batch, length) bool, True for real key tokens (any pattern).
      bias: optional (heads, len(starts) + 1) float: entry [h, r] is added to the scores of the
        offsets d = j - i in run r (see `starts`).
      starts: with bias, the ascending offsets where runs 1, 2, ... begin (`bucket_runs`).
      scale: q multiplier; default head_dim ** -0.5.
      block: the query and key tile (a multiple of 128 on a TPU; any size interpreted); length
        is padded up to a multiple of it.
      interpret: run in the Pallas interpreter; None: `INTERPRET` (by default: compiled for a
        TPU, an error elsewhere).

    Returns:
      (batch, length, heads, head_dim) in q.dtype; rows with no visible key are exactly 0.
    """
    interpret = platform.pallas_interpret("flash", INTERPRET if interpret is None else interpret)
    if block < 1 or (not interpret and block % LANES):
        raise ValueError(f"flash block must be a positive multiple of {LANES} on a TPU, got {block}")
    if (bias is None) != (starts is None):
        raise ValueError("flash_attention takes bias and starts together")
    if bias is not None and bias.shape != (q.shape[2], len(starts) + 1):
        raise ValueError(f"flash bias must be (heads, len(starts) + 1) = "
                         f"{(q.shape[2], len(starts) + 1)}, got {bias.shape}")
    if bias is not None and len(starts) + 1 > LANES:
        raise ValueError(f"flash bias takes at most {LANES} runs, got {len(starts) + 1}")
    valid = attention._key_valid(mask, q.shape[0], q.shape[1])
    vals = (jnp.zeros((q.shape[2], 1), jnp.float32) if bias is None
            else bias.astype(jnp.float32))
    local = partial(_flash_local, window=tuple(window), starts=None if bias is None else
                    tuple(starts), scale=scale, block=block, interpret=interpret)
    specs = platform.kernel_shard_specs(q.shape)
    if specs is None:
        return local(q, k, v, valid, vals)
    heads, rows = specs
    vals_spec = jax.sharding.PartitionSpec(heads[2], None)
    return jax.shard_map(local, mesh=jax.sharding.get_abstract_mesh(),
                         in_specs=(heads, heads, heads, rows, vals_spec), out_specs=heads,
                         check_vma=False)(q, k, v, valid, vals)


def _flash_local(q, k, v, valid, vals, *, window, starts, scale, block, interpret):
    """`flash_attention` on one device's examples and heads; valid (batch, length) bool."""
    batch, length, heads, head_dim = q.shape
    padded = -(-length // block) * block
    pad = padded - length
    scale = head_dim ** -0.5 if scale is None else scale
    q = q * jnp.asarray(scale, q.dtype)

    def length_minor(x):  # (batch, length, heads, d) -> (batch, heads, d, padded)
        return jnp.transpose(attention._pad_axis(x, 1, 0, pad), (0, 2, 3, 1))

    plan = _Plan(block=block, nb=padded // block, window=window, starts=starts,
                 interpret=interpret)
    keys = attention._pad_axis(valid, 1, 0, pad, False).astype(jnp.int32)[:, None, :]
    out = _flash(plan, vals, length_minor(q), length_minor(k), length_minor(v), keys)
    return jnp.transpose(out, (0, 3, 1, 2))[:, :length].astype(q.dtype)
