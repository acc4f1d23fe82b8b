"""Model families and heads, built from a ModelConfig.

Every family shares the token embedding, positions and heads; only the blocks differ (the
mixer of each layer: families.layer_kinds, from the registry in spade_jax.model.families), so the
suite compares like with like.

  Encoder            tokens (B, L) int -> features (B, L, d); padding = tokens == pad_id,
                     unless a mask (B, L) bool (True = real token) is given
  SequenceClassifier tokens (B, L) -> logits (B, num_classes)   [mean over real tokens, or CLS]
  RetrievalClassifier (tokens1, tokens2) -> logits (B, num_classes)
  LanguageModel      tokens (B, L) -> logits (B, L, vocab_size), float32, causal; with targets
                     (B, L): the NLL of each target (B, L); decode=True: one token at a time
`build_model(config)` returns the module the config's `head` asks for.
"""
import flax.linen as nn
import jax.numpy as jnp
import optax

import jax

from spade_jax.model import adaptive, attention, axes, families
from spade_jax.model.config import ModelConfig
from spade_jax.model.layers import FeedForward, dense, layer_norm
from spade_jax.runtime.errors import ConfigError


class Block(nn.Module):
    """One layer: mixer `kind` (a spade_jax.model.families.MIXERS name) + FFN, with residuals:

        pre-LN:  h = x + Dropout(Mixer(LN(x)));   y = h + Dropout(FFN(LN(h)))
        post-LN: h = LN(x + Dropout(Mixer(x)));   y = LN(h + Dropout(FFN(h)))


    __call__(x (B, L, d), mask (B, L) or None, bias, deterministic, decode) -> (B, L, d).
    """

    config: ModelConfig
    kind: str

    @nn.compact
    def __call__(self, x, mask, bias, deterministic: bool, decode: bool = False):
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        mixer = families.mixer(self.kind).build(cfg, "mixer")
        ffn = FeedForward(cfg, name="ffn")
        drop = lambda y: nn.Dropout(cfg.dropout)(y, deterministic=deterministic)
        if cfg.norm == "pre":
            h = x + drop(mixer(layer_norm(dtype, "norm_mixer")(x), mask, bias, decode))
            y = h + drop(ffn(layer_norm(dtype, "norm_ffn")(h), deterministic))
        else:
            h = layer_norm(dtype, "norm_mixer")(x + drop(mixer(x, mask, bias, decode)))
            y = layer_norm(dtype, "norm_ffn")(h + drop(ffn(h, deterministic)))
        return nn.with_logical_constraint(y, axes.ACT_SEQUENCE)


REMAT_POLICIES = {
    "all": None,  # save nothing: recompute the whole block in the backward pass
    "dots": jax.checkpoint_policies.checkpoint_dots,
}


def block_class(cfg: ModelConfig):
    """Block, or Block under nn.remat with the config's named policy."""
    if cfg.remat == "none":
        return Block
    return nn.remat(Block, policy=REMAT_POLICIES[cfg.remat], static_argnums=(4, 5))


class Embed(nn.Embed):
    """nn.Embed whose table is gathered whole at the lookup (axes.gathered): ids (...) ->
    (..., d_model); (B, L) token ids come out split over the batch like every activation. The
    tables here are small: LRA's vocabularies and positions; the LM's embedding is
    spade_jax.model.adaptive's."""

    def __call__(self, inputs):
        rows = jnp.take(axes.gathered(self.embedding).astype(self.dtype), inputs, axis=0)
        return axes.looked_up(rows, inputs)


def _embedding(num, cfg: ModelConfig, name):
    return Embed(num, cfg.d_model, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.float32,
                 name=name, embedding_init=nn.with_logical_partitioning(
                     nn.initializers.normal(1.0), (axes.VOCAB, axes.EMBED)))


class ValueEncoder(nn.Module):
    """Token ids read as intensities (pixel values): id -> 2 * id / (vocab_size - 1) - 1 in
    [-1, 1], then Linear(1 -> d) with bias, as S4 encodes LRA pixels. Nearby values start with
    nearby features, which an embedding table must learn one row at a time.

    tokens (B, L) int -> (B, L, d_model).
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, tokens):
        cfg = self.config
        values = tokens.astype(jnp.float32)[..., None] * (2.0 / (cfg.vocab_size - 1)) - 1.0
        return dense(cfg.d_model, (None, axes.EMBED), jnp.dtype(cfg.dtype), "linear")(values)


class Encoder(nn.Module):
    """Embedding, positions and the stack of blocks.

    __call__(tokens (B, L) int, mask (B, L) bool or None, deterministic) -> (features (B, L', d),
    mask (B, L') bool), where L' = L + 1 with a CLS token prepended (pooling='cls'), else L.
    Without a mask, padding is tokens == pad_id (pixel tasks, where 0 is a real value, pass an
    all-True mask). The LM's embedding is an AdaptiveInput (one plain band without cutoffs).
    decode=True (causal models): tokens (B, 1), the next token of each row; the blocks keep their
    state in the 'cache' collection (see spade_jax.model.decode); mask and max_len do not apply.
    """

    config: ModelConfig

    def setup(self):
        cfg = self.config
        if cfg.head == "lm":  # fairseq's embedding: N(0, d^-1/2) x sqrt(d), bands if adaptive
            self.embed = adaptive.AdaptiveInput(cfg.vocab_size, cfg.d_model, cfg.adaptive_cutoffs,
                                                cfg.adaptive_factor, jnp.dtype(cfg.dtype),
                                                name="embed")
        elif cfg.input_encoder == "linear":
            self.embed = ValueEncoder(cfg, name="embed")
        else:
            self.embed = _embedding(cfg.vocab_size, cfg, "embed")
        kinds = families.layer_kinds(cfg)
        if families.relative_bias_kinds(cfg):
            self.relpos = attention.RelativePositionBias(
                num_heads=cfg.num_heads, num_buckets=cfg.relpos_buckets,
                max_distance=cfg.relpos_max_distance, bidirectional=not cfg.causal, name="relpos")
        if cfg.position == "learned":
            self.position_embed = _embedding(cfg.max_len + 1, cfg, "position_embed")
        if cfg.pooling == "cls":
            self.cls = self.param("cls", nn.with_logical_partitioning(
                nn.initializers.normal(1.0), (axes.EMBED,)), (cfg.d_model,), jnp.float32)
        block = block_class(cfg)
        self.blocks = [block(cfg, kind, name=f"layer_{i}") for i, kind in enumerate(kinds)]
        self.final_norm = layer_norm(jnp.dtype(cfg.dtype), "final_norm") if cfg.final_norm else None
        self.dropout = nn.Dropout(cfg.dropout)

    def __call__(self, tokens, mask=None, deterministic: bool = True, decode: bool = False):
        cfg = self.config
        if tokens.ndim != 2:
            raise ValueError(f"expected token ids of shape (batch, length), got {tokens.shape}")
        if decode:
            return self._decode(tokens), None
        if tokens.shape[1] > cfg.max_len:
            raise ConfigError(f"sequence length {tokens.shape[1]} exceeds model.max_len "
                              f"{cfg.max_len}: raise model.max_len, or shorten the data (e.g. "
                              f"config.data_options.max_length, config.seq_len)")
        mask = tokens != cfg.pad_id if mask is None else mask.astype(bool)
        x = self.embed(tokens)
        if cfg.pooling == "cls":
            cls = jnp.broadcast_to(self.cls.astype(x.dtype), (x.shape[0], 1, x.shape[2]))
            x = jnp.concatenate([cls, x], axis=1)
            mask = jnp.pad(mask, ((0, 0), (1, 0)), constant_values=True)
        length = x.shape[1]
        if cfg.position == "learned":
            x = x + self.position_embed(jnp.arange(length))[None]
        x = nn.with_logical_constraint(self.dropout(x, deterministic=deterministic),
                                       axes.ACT_SEQUENCE)
        biases = self._relative_biases(length, decode=False)
        for block in self.blocks:
            x = block(x, mask, biases.get(block.kind), deterministic, False)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, mask

    def _decode(self, tokens):
        """tokens (B, 1) -> features (B, 1, d) of the next position."""
        cfg = self.config
        if not cfg.causal:
            raise ValueError("decoding needs a causal model (model.causal=True)")
        if tokens.shape[1] != 1:
            raise ValueError(f"decoding takes one token per row, got shape {tokens.shape}")
        if cfg.position == "learned":
            raise ValueError("decoding supports model.position 'relative' or 'none', not "
                             "'learned'")
        x = self.embed(tokens)
        biases = self._relative_biases(1, decode=True)
        for block in self.blocks:
            x = block(x, None, biases.get(block.kind), True, True)
        return self.final_norm(x) if self.final_norm is not None else x

    def _relative_biases(self, length, decode: bool) -> dict:
        """{layer kind: the shared relative-position bias in the form it takes} (see
        spade_jax.model.families.relative_bias_kinds), each form computed once: 'dense' (1, heads, L, L) (a
        (heads, 2*(max_len-1)+1) offset table when decoding), 'window' a (heads, 2*radius+1)
        offset table."""
        cfg = self.config
        forms = families.relative_bias_kinds(cfg)
        tables = {}
        if "dense" in forms.values():
            tables["dense"] = (self.relpos.offsets(cfg.max_len - 1) if decode
                               else self.relpos.dense(length, length))
        if "window" in forms.values():
            tables["window"] = self.relpos.offsets(cfg.radius)
        return {kind: tables[form] for kind, form in forms.items()}


def _mean_pool(x, mask):
    """Mean over real tokens: x (B, L, d), mask (B, L) -> (B, d), float32."""
    weights = mask.astype(jnp.float32)[..., None]
    return (x.astype(jnp.float32) * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)


class SequenceClassifier(nn.Module):
    """tokens (B, L) [, mask (B, L)] -> logits (B, num_classes), float32."""

    config: ModelConfig

    @nn.compact
    def __call__(self, tokens, mask=None, deterministic: bool = True):
        cfg = self.config
        x, mask = Encoder(cfg, name="encoder")(tokens, mask, deterministic)
        pooled = x[:, 0].astype(jnp.float32) if cfg.pooling == "cls" else _mean_pool(x, mask)
        return dense(cfg.num_classes, (axes.EMBED, axes.CLASSES), jnp.float32, "classifier")(pooled)


class RetrievalClassifier(nn.Module):
    """Dual encoder (shared weights): (tokens1, tokens2) (B, L) each [, mask1, mask2] -> logits
    (B, num_classes).

    Features [e1, e2, e1*e2, e1-e2] of the pooled encodings go through Linear -> GELU -> Linear.
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, tokens1, tokens2, mask1=None, mask2=None, deterministic: bool = True):
        cfg = self.config
        encoder = Encoder(cfg, name="encoder")
        pool = lambda x, mask: x[:, 0].astype(jnp.float32) if cfg.pooling == "cls" else _mean_pool(x, mask)
        e1, e2 = (pool(*encoder(t, m, deterministic)) for t, m in ((tokens1, mask1), (tokens2, mask2)))
        h = jnp.concatenate([e1, e2, e1 * e2, e1 - e2], axis=-1)
        h = nn.gelu(dense(cfg.d_model, (axes.MLP, axes.EMBED), jnp.float32, "mlp")(h))
        return dense(cfg.num_classes, (axes.EMBED, axes.CLASSES), jnp.float32, "classifier")(h)


class LanguageModel(nn.Module):
    """Causal LM.

    __call__(tokens (B, L) int, mask (B, L) bool or None, targets (B, L) int or None,
    deterministic, decode) ->
      targets None: logits (B, L, vocab_size) float32 (log-probabilities when the output layer
        is an AdaptiveSoftmax: tied or adaptive);
      targets given: the negative log-likelihood of each target (B, L) float32, computed without
        materialising (B, L, vocab_size) when the softmax is adaptive.
    decode=True: tokens (B, 1), the next token of each row; the state lives in the 'cache'
    collection (spade_jax.model.decode drives it).
    With tie_embeddings the output layer shares the input embedding (its transpose; adaptive:
    the band embeddings and projections); untied and without cutoffs it is a Dense layer.
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, tokens, mask=None, targets=None, deterministic: bool = True,
                 decode: bool = False):
        cfg = self.config
        encoder = Encoder(cfg, name="encoder")
        x, _ = encoder(tokens, mask, deterministic, decode)
        if cfg.adaptive_cutoffs or cfg.tie_embeddings:
            softmax = adaptive.AdaptiveSoftmax(
                cfg.vocab_size, cfg.d_model, cfg.adaptive_cutoffs, cfg.adaptive_factor,
                cfg.adaptive_dropout, cfg.tie_embeddings, jnp.dtype(cfg.dtype), name="softmax")
            tied = encoder.embed.tables() if cfg.tie_embeddings else None
            if targets is not None:
                return softmax.nll(x, targets, tied, deterministic)
            return softmax.log_probs(x, tied)
        logits = dense(cfg.vocab_size, (axes.EMBED, axes.VOCAB), jnp.float32, "logits")(x)
        if targets is None:
            return logits
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets)


HEADS = {"classify": SequenceClassifier, "retrieval": RetrievalClassifier, "lm": LanguageModel}


def build_model(config) -> nn.Module:
    """The model for a ModelConfig, a ConfigDict or a dict of its fields (checked, the registry's
    checks included: spade_jax.model.families.check)."""
    cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_config(config)
    return HEADS[families.check(cfg).head](cfg)
