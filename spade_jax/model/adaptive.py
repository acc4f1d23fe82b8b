"""Adaptive input (Baevski & Auli, 2019) and adaptive softmax (Grave et al., 2017), as fairseq
defines them, for large vocabularies (WikiText-103: 267K words).

Token ids are sorted by frequency and cut at `cutoffs` (c_0 < c_1 < ... < V) into bands: band 0
holds ids [0, c_0), band i ids [c_{i-1}, c_i), the last band ends at V. Band i has
d_i = d_model // factor**i dimensions (WikiText-103: 1024 / 256 / 64 for 20K / 40K / 208K words).

  adaptive input    token t of band i -> E_i[t - start_i] (d_i) -> P_i (d_i -> d) -> * sqrt(d)
  adaptive softmax  head: h (d) -> [c_0 word logits = h E_0^T, one cluster logit per tail = h K]
                    log p(t) = log_softmax(head)[t]                                    (band 0)
                    log p(t) = log_softmax(head)[c_0 + i - 1]
                               + log_softmax(Dropout(h Q_i) E_i^T)[t - start_i]      (tail i >= 1)

Tied (fairseq's tie_adaptive_weights + tie_adaptive_proj): the head's word part is E_0, tail i's
projection Q_i is P_i^T and its output table E_i; only K (d, tails) is the softmax's own. Untied:
the softmax owns all its tables. With no cutoffs there is one band of d_model dimensions and no
projection: a plain embedding, and the softmax is exactly the dense one, softmax(h E^T).

The loss needs only each target's log-probability: `AdaptiveSoftmax.nll` computes it band by
band with static shapes, in row chunks whose logits stay below `LOGITS_BUDGET` elements and are
recomputed in the backward pass (a 207K-word tail over 3072 positions would otherwise be a
2.5 GB array). Every tail is evaluated at every position (XLA needs static shapes), which costs
d·d_i + d_i·|band i| multiply-adds per token: about a sixth of the 16 x 1024 model's FLOPs.
`log_probs` gives the whole distribution, for generation.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spade_jax.model import axes

LOGITS_BUDGET = 1 << 25  # elements of one materialised (rows, band) logits block: 128 MiB f32


def bands(vocab_size: int, cutoffs, d_model: int, factor: int):
    """[(start, size, dim)] of each band."""
    edges = [0, *cutoffs, vocab_size]
    return [(edges[i], edges[i + 1] - edges[i], d_model // factor ** i)
            for i in range(len(edges) - 1)]


def _param(module, name, init, names, shape):
    """A float32 parameter whose axes carry the logical `names` (spade_jax.model.axes)."""
    return module.param(name, nn.with_logical_partitioning(init, names), shape, jnp.float32)


class AdaptiveInput(nn.Module):
    """tokens (...) int -> embeddings (..., d_model) in `dtype`. See the module docstring.

    Parameters: band_i/embedding (size_i, d_i), initialised N(0, d_i^-1/2) as fairseq;
    band_i/projection (d_i, d_model) when there are cutoffs.
    """

    vocab_size: int
    d_model: int
    cutoffs: tuple = ()
    factor: int = 4
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.bands = bands(self.vocab_size, self.cutoffs, self.d_model, self.factor)
        self.embeddings = [
            _param(self, f"band_{i}_embedding", nn.initializers.normal(dim ** -0.5),
                   (axes.VOCAB, axes.EMBED if dim == self.d_model else None), (size, dim))
            for i, (_, size, dim) in enumerate(self.bands)]
        self.projections = [
            _param(self, f"band_{i}_projection", nn.initializers.xavier_uniform(),
                   (None, axes.EMBED), (dim, self.d_model))
            for i, (_, _, dim) in enumerate(self.bands)] if self.cutoffs else [None]

    def tables(self):
        """[(E_i (size_i, d_i), P_i (d_i, d_model) or None)] float32, for a tied softmax."""
        return list(zip(self.embeddings, self.projections))

    def __call__(self, tokens):
        """tokens (...) -> (..., d_model); (B, L) tokens come out split over the batch like every
        activation. The tables and projections are gathered whole at the lookup
        (axes.gathered)."""
        out = jnp.zeros(tokens.shape + (self.d_model,), self.dtype)
        for (start, size, _), table, proj in zip(self.bands, self.embeddings, self.projections):
            in_band = (tokens >= start) & (tokens < start + size)
            e = jnp.take(axes.gathered(table), jnp.clip(tokens - start, 0, size - 1), axis=0
                         ).astype(self.dtype)
            if proj is not None:
                e = jnp.dot(e, axes.gathered(proj).astype(self.dtype))
            out = out + jnp.where(in_band[..., None], e, 0)
        return axes.looked_up(out * jnp.asarray(np.sqrt(self.d_model), self.dtype), tokens)


def _cross_entropy(h, table, targets, dtype):
    """h (N, k), table (S, k), targets (N,) in [0, S) -> NLL (N,) float32 of softmax(h table^T),
    as optax.softmax_cross_entropy_with_integer_labels computes it."""
    logits = jnp.einsum("nk,sk->ns", h.astype(dtype), table.astype(dtype),
                        preferred_element_type=jnp.float32)
    label = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    return jax.nn.logsumexp(logits, axis=-1) - label


def softmax_nll(h, table, targets, dtype=jnp.float32, budget: int = LOGITS_BUDGET):
    """`_cross_entropy` in row chunks of at most `budget` logits each, rematerialised in the
    backward pass: memory O(budget) whatever N and S."""
    n, size = h.shape[0], table.shape[0]
    rows = max(1, budget // size)
    if n <= rows:
        return _cross_entropy(h, table, targets, dtype)
    chunks = -(-n // rows)
    pad = chunks * rows - n
    hc = jnp.pad(h, ((0, pad), (0, 0))).reshape(chunks, rows, h.shape[1])
    tc = jnp.pad(targets, (0, pad)).reshape(chunks, rows)
    body = jax.checkpoint(lambda args: _cross_entropy(args[0], table, args[1], dtype))
    return jax.lax.map(body, (hc, tc)).reshape(-1)[:n]


class AdaptiveSoftmax(nn.Module):
    """The output layer over `vocab_size` words, given features h (..., d_model).

    Without cutoffs it is the dense softmax over h E^T. `tied` is AdaptiveInput.tables() of the
    input embedding (pass it to every method) or None for untied weights, which this module then
    owns: head_words (c_0, d_model), tail_i_projection (d_model, d_i), tail_i_embedding
    (size_i, d_i). Always its own: clusters (d_model, tails).
    """

    vocab_size: int
    d_model: int
    cutoffs: tuple = ()
    factor: int = 4
    dropout: float = 0.0
    tied: bool = True
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.bands = bands(self.vocab_size, self.cutoffs, self.d_model, self.factor)
        tails = len(self.bands) - 1
        if tails:
            self.clusters = _param(self, "clusters", nn.initializers.xavier_uniform(),
                                   (axes.EMBED, None), (self.d_model, tails))
        if not self.tied:
            self.head_words = _param(self, "head_words",
                                     nn.initializers.normal(self.d_model ** -0.5),
                                     (axes.VOCAB, axes.EMBED), (self.bands[0][1], self.d_model))
            self.tail_projections = [
                _param(self, f"tail_{i}_projection", nn.initializers.xavier_uniform(),
                       (axes.EMBED, None), (self.d_model, dim))
                for i, (_, _, dim) in enumerate(self.bands[1:], 1)]
            self.tail_embeddings = [
                _param(self, f"tail_{i}_embedding", nn.initializers.normal(dim ** -0.5),
                       (axes.VOCAB, None), (size, dim))
                for i, (_, size, dim) in enumerate(self.bands[1:], 1)]
        self.drop = nn.Dropout(self.dropout)

    def _tables(self, tied):
        """(head table (c_0 + tails, d), [(Q_i (d, d_i), E_i (size_i, d_i)) per tail])."""
        if self.tied:
            if tied is None or len(tied) != len(self.bands):
                raise ValueError(f"a tied AdaptiveSoftmax needs the input's {len(self.bands)} "
                                 f"band tables (AdaptiveInput.tables())")
            words = tied[0][0]
            tails = [(proj.T, emb) for emb, proj in tied[1:]]
        else:
            words = self.head_words
            tails = list(zip(self.tail_projections, self.tail_embeddings))
        head = jnp.concatenate([words, self.clusters.T], 0) if tails else words
        return head, tails

    def _tail_features(self, h, proj, deterministic):
        h = jnp.dot(h.astype(self.dtype), proj.astype(self.dtype),
                    preferred_element_type=jnp.float32)
        return self.drop(h, deterministic=deterministic)

    def nll(self, h, targets, tied=None, deterministic: bool = True):
        """h (..., d_model), targets (...) int in [0, vocab_size) -> -log p(target) (...)
        float32."""
        head, tails = self._tables(tied)
        shape = targets.shape
        h = h.reshape(-1, h.shape[-1])
        targets = targets.reshape(-1)
        c0 = self.bands[0][1]
        head_targets = targets
        tail_nll = jnp.zeros(targets.shape, jnp.float32)
        for i, ((start, size, _), (proj, emb)) in enumerate(zip(self.bands[1:], tails)):
            in_band = (targets >= start) & (targets < start + size)
            head_targets = jnp.where(in_band, c0 + i, head_targets)
            loss = softmax_nll(self._tail_features(h, proj, deterministic), emb,
                               jnp.clip(targets - start, 0, size - 1), self.dtype)
            tail_nll = tail_nll + jnp.where(in_band, loss, 0.0)
        return (softmax_nll(h, head, head_targets, self.dtype) + tail_nll).reshape(shape)

    def log_probs(self, h, tied=None):
        """h (..., d_model) -> log-probabilities (..., vocab_size) float32 (they sum to 1)."""
        head, tails = self._tables(tied)
        logits = lambda x, table: jnp.einsum("...k,sk->...s", x.astype(self.dtype),
                                             table.astype(self.dtype),
                                             preferred_element_type=jnp.float32)
        head_lp = jax.nn.log_softmax(logits(h, head), axis=-1)
        c0 = self.bands[0][1]
        parts = [head_lp[..., :c0]]
        for i, (proj, emb) in enumerate(tails):
            tail = jax.nn.log_softmax(logits(self._tail_features(h, proj, True), emb), axis=-1)
            parts.append(head_lp[..., c0 + i, None] + tail)
        return jnp.concatenate(parts, axis=-1)

