"""The layers a block is made of: the token mixers, the feed-forward network, projections and
norms (a block, mixer + FFN with residuals, is spade_jax.model.models.Block).

Mixers (registered in spade_jax.model.families by kind, which builds them):
  'global'  SPADE's global mixer: an S4 branch and a local-attention branch on the same input,
            each LayerNormed, merged by `combine` ('concat' -> Linear(2d -> d), 'add'); or
            'stack': local attention applied to S4's output (no inner LayerNorms).
  'window'  local (sliding-window) attention, 'chunk' chunked attention, 'full' full attention.
  's4'      S4 -> GELU -> Linear (the S4-only baseline; same FFN and residuals as the others).
Activations are (batch, length, d_model) with logical axes axes.ACT_SEQUENCE (spade_jax.model.axes).

Decoding (`decode=True`, causal models): the input is one token (batch, 1, d_model) and each
mixer keeps what it needs in the 'cache' collection, with the same parameters as the parallel
forward: S4 its recurrent state (S4Layer.init_state / step), window attention a ring buffer of
radius + 1 keys and values, chunk attention chunk_size, full attention max_len (preallocated).
The first call with an empty cache only creates it (and returns zeros); see spade_jax.model.decode.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from spade_jax.model import attention, attention_accel, attention_flash, axes
from spade_jax.model.config import ModelConfig
from spade_jax.model.ssm import S4Layer


def dense(features, axes, dtype, name=None, use_bias=True):
    """A Dense layer whose kernel carries the logical axis names `axes` (in, out)."""
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, name=name,
                    kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(), axes),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[1:]))


class Projection(nn.Module):
    """A linear map without bias contracting x's last `n_in` axes with the kernel's first `n_in`:
    x (..., *shape[:n_in]) -> (..., *shape[n_in:]); e.g. (B, L, d) -> (B, L, heads, head_dim).

    The kernel (float32, logical axis names `names`) is Xavier-uniform with fan-in the
    contracted axes and fan-out the rest: the values nn.DenseGeneral draws for its flattened
    kernel. nn.DenseGeneral itself cannot be used here: it applies the kernel's 3-axis sharding
    constraint to that flat 2-axis kernel, an error once a mesh is set (flax#3676).
    """

    shape: tuple
    names: tuple
    n_in: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.xavier_uniform(
            in_axis=tuple(range(self.n_in)), out_axis=tuple(range(self.n_in, len(self.shape))))
        kernel = self.param("kernel", nn.with_logical_partitioning(init, self.names), self.shape,
                            jnp.float32)
        contract = (tuple(range(x.ndim - self.n_in, x.ndim)), tuple(range(self.n_in)))
        return jax.lax.dot_general(x.astype(self.dtype), kernel.astype(self.dtype),
                                   (contract, ((), ())))


def layer_norm(dtype, name=None):
    return nn.LayerNorm(dtype=dtype, param_dtype=jnp.float32, name=name,
                        scale_init=nn.with_logical_partitioning(nn.initializers.ones, (axes.EMBED,)),
                        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes.EMBED,)))


class SelfAttention(nn.Module):
    """Multi-head self-attention with Q/K/V/O projections (no bias).

    kind: an attention kind (spade_jax.model.attention.AttentionKind, from the mixer registry):
    which keys each query sees, its portable kernel and its decoding cache. The kernel is the
    config's attention_impl: 'blocked' (the kind's kernel of spade_jax.model.attention), an
    accelerator kernel of spade_jax.model.attention_accel ('flash' takes the window bias, the
    others none), or 'auto' (attention_accel.resolve: on a TPU flash for a window bias, splash
    for none; blocked otherwise).
    __call__(x (B, L, d), mask (B, L) bool or None, bias, decode) -> (B, L, d). `bias` is the
    shared relative-position bias in the form the kind takes (kind.bias): (1, heads, L, L)
    'dense', (heads, 2*radius+1) 'window'; None for none. Decoding (x (B, 1, d), mask ignored):
    bias is a (heads, 2*R+1) offset table (R = max_len - 1 for 'dense').
    """

    config: ModelConfig
    kind: attention.AttentionKind

    @nn.compact
    def __call__(self, x, mask=None, bias=None, decode: bool = False):
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        proj = lambda name: Projection((x.shape[-1], cfg.num_heads, cfg.head_dim),
                                       (axes.EMBED, axes.HEADS, axes.HEAD_DIM), 1, dtype, name=name)
        heads_axes = (axes.ACT_BATCH, axes.ACT_LENGTH, axes.ACT_HEADS, axes.ACT_HEAD_DIM)
        q, k, v = (nn.with_logical_constraint(proj(n)(x), heads_axes)
                   for n in ("query", "key", "value"))
        impl = attention_accel.resolve(cfg.attention_impl,
                                       None if bias is None else self.kind.bias(cfg))
        if decode:
            out = self._decode(q, k, v, bias)
        elif impl != "blocked":
            starts = None
            if bias is not None:  # a (heads, 2 * radius + 1) window table: 'flash' alone
                starts = attention_flash.bucket_runs(
                    cfg.radius, bidirectional=not cfg.causal, num_buckets=cfg.relpos_buckets,
                    max_distance=cfg.relpos_max_distance)
                bias = attention_flash.run_values(bias, starts)
            out = attention_accel.attend(impl, self.kind.window(cfg), q, k, v,
                                         chunk=self.kind.chunk(cfg), mask=mask, bias=bias,
                                         starts=starts)
        else:
            out = self.kind.blocked(q, k, v, cfg, mask, bias)
        return Projection((cfg.num_heads, cfg.head_dim, cfg.d_model),
                          (axes.HEADS, axes.HEAD_DIM, axes.EMBED), 2, dtype, name="out")(out)

    def _decode(self, q, k, v, bias):
        """One token against the cache (see attention.ring_positions for the slots)."""
        cfg = self.config
        size = self.kind.cache(cfg)
        ready = self.has_variable("cache", "index")
        shape = (k.shape[0], size) + k.shape[2:]
        keys = self.variable("cache", "keys", jnp.zeros, shape, k.dtype)
        values = self.variable("cache", "values", jnp.zeros, shape, v.dtype)
        index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
        if not ready:
            return jnp.zeros_like(q)
        if q.shape[1] != 1:
            raise ValueError(f"decoding takes one token at a time, got length {q.shape[1]}")
        i = index.value
        positions, visible = attention.ring_positions(i, size, self.kind.decode_slots(cfg))
        slot = i % size
        keys.value = jax.lax.dynamic_update_slice_in_dim(keys.value, k, slot, axis=1)
        values.value = jax.lax.dynamic_update_slice_in_dim(values.value, v, slot, axis=1)
        index.value = i + 1
        if bias is not None:
            center = (bias.shape[1] - 1) // 2
            bias = jnp.take(bias, jnp.clip(positions - i + center, 0, 2 * center), axis=1)
        return attention.attend_cache(q, keys.value, values.value, visible, bias)


def s4_layer(cfg: ModelConfig, name="s4") -> S4Layer:
    return S4Layer(d_model=cfg.d_model, d_state=cfg.s4.d_state, kernel=cfg.s4.kernel,
                   mode=cfg.s4.mode, chunk_size=cfg.s4.chunk_steps,
                   discretization=cfg.s4.discretization, dt_min=cfg.s4.dt_min,
                   dt_max=cfg.s4.dt_max, bidirectional=cfg.s4_bidirectional,
                   ssm_init=cfg.s4.init, b_clip=cfg.s4.b_clip, l_max=cfg.max_len + (cfg.pooling == "cls"), name=name)


def _run_s4(module: nn.Module, cfg: ModelConfig, u, mask, decode: bool):
    """The config's S4 layer on u (B, L, d), created inside `module`; when decoding, one step
    of its recurrence with the state kept in module's 'cache' collection."""
    s4 = s4_layer(cfg)
    if not decode:
        return s4(u, mask)
    ready = module.has_variable("cache", "s4_state")
    state = module.variable("cache", "s4_state", s4.init_state, u.shape[0])
    if not ready:
        return jnp.zeros_like(u)
    state.value, y = s4.step(state.value, u[:, 0])
    return y[:, None]


class GlobalMixer(nn.Module):
    """SPADE's global mixer: g = LN_g(S4(u)), l = LN_l(LocalAttn(u)), merged by `combine`
    ('concat': Linear([g, l]); 'add': (g + l) / 2), or, with combine='stack', LocalAttn(S4(u))
    with no inner LayerNorm (the reference's stacked form, spade_layer.py).

    local: the attention kind of the local branch (the config's `local_attention`, looked up in
    the registry by spade_jax.model.families).
    """

    config: ModelConfig
    local: attention.AttentionKind

    @nn.compact
    def __call__(self, u, mask=None, bias=None, decode: bool = False):
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        local = SelfAttention(cfg, self.local, name="attention")
        if cfg.combine == "stack":
            return local(_run_s4(self, cfg, u, mask, decode), mask, bias, decode)
        g = layer_norm(dtype, "norm_s4")(_run_s4(self, cfg, u, mask, decode))
        l = layer_norm(dtype, "norm_attention")(local(u, mask, bias, decode))
        if cfg.combine == "add":
            return 0.5 * (g + l)
        return dense(cfg.d_model, (axes.MLP, axes.EMBED), dtype, "combine")(jnp.concatenate([g, l], -1))


class S4Mixer(nn.Module):
    """The S4-only baseline's mixer: Linear(GELU(S4(u)))."""

    config: ModelConfig

    @nn.compact
    def __call__(self, u, mask=None, bias=None, decode: bool = False):
        cfg = self.config
        y = nn.gelu(_run_s4(self, cfg, u, mask, decode))
        return dense(cfg.d_model, (axes.EMBED, axes.MLP), jnp.dtype(cfg.dtype), "out")(y)


class FeedForward(nn.Module):
    """Linear(d -> d_ff) -> activation -> dropout -> Linear(d_ff -> d)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x, deterministic: bool):
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        h = dense(cfg.d_ff, (axes.EMBED, axes.MLP), dtype, "wi")(x)
        h = nn.with_logical_constraint(h, (axes.ACT_BATCH, axes.ACT_LENGTH, axes.ACT_MLP))
        h = nn.relu(h) if cfg.activation == "relu" else nn.gelu(h)
        h = nn.Dropout(cfg.ffn_dropout)(h, deterministic=deterministic)
        return dense(cfg.d_model, (axes.MLP, axes.EMBED), dtype, "wo")(h)
