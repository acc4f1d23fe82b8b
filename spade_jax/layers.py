"""Blocks: every layer is a token mixer followed by a feed-forward network, with residuals.

    pre-LN:  h = x + Dropout(Mixer(LN(x)));   y = h + Dropout(FFN(LN(h)))
    post-LN: h = LN(x + Dropout(Mixer(x)));   y = LN(h + Dropout(FFN(h)))

Mixers (`kind`):
  'global'  SPADE's global mixer: an S4 branch and a local-attention branch on the same input,
            each LayerNormed, merged by `combine` ('concat' -> Linear(2d -> d), 'add', 'stack').
  'window'  local (sliding-window) attention, 'chunk' chunked attention, 'full' full attention.
  's4'      S4 -> GELU -> Linear (the S4-only baseline; same FFN and residuals as the others).
Activations are (batch, length, d_model) with logical axes ('batch', 'length', 'embed').
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from spade_jax import attention
from spade_jax.config import ModelConfig
from spade_jax.ssm import S4Layer

ACTIVATION_AXES = ("batch", "length", "embed")


def dense(features, axes, dtype, name=None, use_bias=True):
    """A Dense layer whose kernel carries the logical axis names `axes` (in, out)."""
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, name=name,
                    kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(), axes),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[1:]))


def layer_norm(dtype, name=None):
    return nn.LayerNorm(dtype=dtype, param_dtype=jnp.float32, name=name,
                        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))


class SelfAttention(nn.Module):
    """Multi-head self-attention with Q/K/V/O projections (no bias).

    kind: 'full', 'window' (radius from the config) or 'chunk' (chunk_size from the config).
    __call__(x (B, L, d), mask (B, L) bool or None, bias) -> (B, L, d). `bias` is the shared
    relative-position bias in the form the kind takes: (1, heads, L, L) for full, (heads,
    2*radius+1) for window; None for none (chunk attention takes no bias).
    """

    config: ModelConfig
    kind: str

    @nn.compact
    def __call__(self, x, mask=None, bias=None):
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        proj = lambda name: nn.DenseGeneral(
            (cfg.num_heads, cfg.head_dim), use_bias=False, dtype=dtype, param_dtype=jnp.float32,
            name=name, kernel_init=nn.with_logical_partitioning(
                nn.initializers.xavier_uniform(), ("embed", "heads", "head_dim")))
        q, k, v = (nn.with_logical_constraint(proj(n)(x), ("batch", "length", "heads", "head_dim"))
                   for n in ("query", "key", "value"))
        if self.kind == "full":
            out = attention.full_attention(q, k, v, causal=cfg.causal, mask=mask, bias=bias)
        elif self.kind == "window":
            out = attention.local_attention(q, k, v, radius=cfg.radius, causal=cfg.causal,
                                            mask=mask, bias=bias)
        elif self.kind == "chunk":
            out = attention.chunk_attention(q, k, v, chunk=cfg.chunk_size, causal=cfg.causal,
                                            mask=mask)
        else:
            raise ValueError(f"unknown attention kind {self.kind!r}")
        return nn.DenseGeneral(
            cfg.d_model, axis=(-2, -1), use_bias=False, dtype=dtype, param_dtype=jnp.float32,
            name="out", kernel_init=nn.with_logical_partitioning(
                nn.initializers.xavier_uniform(), ("heads", "head_dim", "embed")))(out)


def s4_layer(cfg: ModelConfig, name="s4") -> S4Layer:
    return S4Layer(d_model=cfg.d_model, d_state=cfg.s4.d_state, kernel=cfg.s4.kernel,
                   mode=cfg.s4.mode, discretization=cfg.s4.discretization, dt_min=cfg.s4.dt_min,
                   dt_max=cfg.s4.dt_max, bidirectional=cfg.s4_bidirectional,
                   l_max=cfg.max_len + (cfg.pooling == "cls"), name=name)


class GlobalMixer(nn.Module):
    """SPADE's global mixer: g = LN_g(S4(u)), l = LN_l(LocalAttn(u)), merged by `combine`.

    The local attention is the config's `local_attention` kind ('window' or 'chunk').
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, u, mask=None, bias=None):
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        local = SelfAttention(cfg, cfg.local_attention, name="attention")
        g = layer_norm(dtype, "norm_s4")(s4_layer(cfg)(u, mask))
        if cfg.combine == "stack":
            return layer_norm(dtype, "norm_attention")(local(g, mask, bias))
        l = layer_norm(dtype, "norm_attention")(local(u, mask, bias))
        if cfg.combine == "add":
            return 0.5 * (g + l)
        return dense(cfg.d_model, ("mlp", "embed"), dtype, "combine")(jnp.concatenate([g, l], -1))


class S4Mixer(nn.Module):
    """The S4-only baseline's mixer: Linear(GELU(S4(u)))."""

    config: ModelConfig

    @nn.compact
    def __call__(self, u, mask=None, bias=None):
        cfg = self.config
        y = nn.gelu(s4_layer(cfg)(u, mask))
        return dense(cfg.d_model, ("embed", "mlp"), jnp.dtype(cfg.dtype), "out")(y)


class FeedForward(nn.Module):
    """Linear(d -> d_ff) -> activation -> dropout -> Linear(d_ff -> d)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x, deterministic: bool):
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        h = dense(cfg.d_ff, ("embed", "mlp"), dtype, "wi")(x)
        h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
        h = nn.relu(h) if cfg.activation == "relu" else nn.gelu(h)
        h = nn.Dropout(cfg.ffn_dropout)(h, deterministic=deterministic)
        return dense(cfg.d_model, ("mlp", "embed"), dtype, "wo")(h)


class Block(nn.Module):
    """One layer: mixer `kind` + FFN, pre- or post-LN (see the module docstring).

    __call__(x (B, L, d), mask (B, L) or None, bias, deterministic) -> (B, L, d).
    """

    config: ModelConfig
    kind: str

    @nn.compact
    def __call__(self, x, mask, bias, deterministic: bool):
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        if self.kind == "global":
            mixer = GlobalMixer(cfg, name="mixer")
        elif self.kind == "s4":
            mixer = S4Mixer(cfg, name="mixer")
        else:
            mixer = SelfAttention(cfg, self.kind, name="mixer")
        ffn = FeedForward(cfg, name="ffn")
        drop = lambda y: nn.Dropout(cfg.dropout)(y, deterministic=deterministic)
        if cfg.norm == "pre":
            h = x + drop(mixer(layer_norm(dtype, "norm_mixer")(x), mask, bias))
            y = h + drop(ffn(layer_norm(dtype, "norm_ffn")(h), deterministic))
        else:
            h = layer_norm(dtype, "norm_mixer")(x + drop(mixer(x, mask, bias)))
            y = layer_norm(dtype, "norm_ffn")(h + drop(ffn(h, deterministic)))
        return nn.with_logical_constraint(y, ACTIVATION_AXES)


REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole block in the backward pass
    "dots": jax.checkpoint_policies.checkpoint_dots,
}


def block_class(cfg: ModelConfig):
    """Block, or Block under nn.remat with the config's named policy."""
    if cfg.remat == "none":
        return Block
    return nn.remat(Block, policy=REMAT_POLICIES[cfg.remat], static_argnums=(4,))
