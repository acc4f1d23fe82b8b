"""Autoregressive decoding of a LanguageModel through its recurrent view, and sampling.

The cache is the model's 'cache' collection (see spade_jax.model.layers): per S4 layer its recurrent
state (B, H, n) plus the discretised system, per window-attention layer a ring buffer of
radius + 1 keys and values (B, radius + 1, heads, head_dim), per chunk-attention layer chunk_size
entries, per full-attention layer max_len entries. For the spade, local and s4 families every
shape is fixed: memory and time per token stay constant however long the text grows. The
transformer family's cache holds up to max_len tokens.

    model = decoding_model(cfg)                        # the LM, without remat
    cache = init_cache(model, params, batch_size)
    logits, cache = step(model, params, cache, tokens)  # tokens (B,) -> logits (B, V)
    tokens = generate(model, params, prompt, 50, rng)   # or greedy / top-k / top-p sampling
"""
import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from spade_jax.model import families, models
from spade_jax.model.config import ModelConfig


def decoding_model(cfg: ModelConfig, max_len: int | None = None) -> models.LanguageModel:
    """The LanguageModel of `cfg` for decoding (same parameters; remat off). `max_len` widens the
    full-attention cache of the transformer family (relative positions extend to any length);
    the other families keep their max_len (S4's kernel was derived for it) and need no more."""
    if cfg.head != "lm":
        raise ValueError(f"decoding needs model.head='lm', got {cfg.head!r}")
    changes = {"remat": "none"}
    if max_len is not None and max_len > cfg.max_len and families.grows(cfg):
        changes["max_len"] = max_len
    return models.LanguageModel(dataclasses.replace(cfg, **changes))


def capacity(model: models.LanguageModel) -> int | None:
    """How many tokens the cache holds: max_len when a layer attends to all previous tokens,
    None (unbounded) otherwise."""
    return model.config.max_len if families.grows(model.config) else None


@functools.partial(jax.jit, static_argnums=(0, 2))
def init_cache(model: models.LanguageModel, params, batch_size: int):
    """An empty cache for `batch_size` rows, built from `params` (S4's discretised system is
    derived from them once here)."""
    tokens = jnp.zeros((batch_size, 1), jnp.int32)
    _, variables = model.apply({"params": params}, tokens, decode=True, mutable=["cache"])
    return variables["cache"]


def step(model: models.LanguageModel, params, cache, tokens):
    """Feeds tokens (B,) int: returns (logits (B, vocab_size) float32 of the next token, cache)."""
    logits, variables = model.apply({"params": params, "cache": cache}, tokens[:, None],
                                    decode=True, mutable=["cache"])
    return logits[:, 0], variables["cache"]


def _cutoff(values, enough, iterations: int = 48):
    """The largest t (to float precision) such that enough(values >= t) holds, by bisection:
    values (B, V) finite -> (B, 1). O(V) per iteration, where a sort (top-k, top-p) is slow on
    CPU. Values tied with the cutoff all stay."""
    def body(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) / 2
        ok = enough(values >= mid)
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    bounds = (values.min(-1, keepdims=True), values.max(-1, keepdims=True))
    return jax.lax.fori_loop(0, iterations, body, bounds)[0]


def sample(logits, rng, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0):
    """Next tokens (B,) int32 from logits (B, V): greedy (argmax) when temperature is 0, else a
    draw from softmax(logits / temperature) restricted to the top_k most likely tokens (0: all)
    and to the smallest set of most likely tokens whose probability reaches top_p (1.0: all);
    tokens tied at either boundary are kept."""
    if temperature <= 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if top_k:
        finite = jnp.where(jnp.isfinite(logits), logits, jnp.finfo(jnp.float32).min / 4)
        kth = _cutoff(finite, lambda keep: keep.sum(-1, keepdims=True) >= top_k)
        logits = jnp.where(finite >= kth, logits, -jnp.inf)
    if top_p < 1.0:
        probs = jax.nn.softmax(logits, axis=-1)
        least = _cutoff(probs, lambda keep: jnp.where(keep, probs, 0.0).sum(-1, keepdims=True)
                        >= top_p)
        logits = jnp.where(probs >= least, logits, -jnp.inf)
    # Inverse-CDF draw: one uniform per row (Gumbel-max would draw V of them).
    cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)
    u = jax.random.uniform(rng, (logits.shape[0], 1)) * cdf[:, -1:]
    return jnp.minimum(jnp.sum(cdf <= u, axis=-1), logits.shape[-1] - 1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnums=(0, 4))
def feed(model, params, cache, tokens, all_logits: bool = False):
    """Feeds tokens (B, T) one position at a time (one compiled scan): returns (the logits
    after the last token (B, V), or after each token (B, T, V) with all_logits; cache)."""
    first, cache = step(model, params, cache, tokens[:, 0])

    def body(carry, token):
        logits, cache = step(model, params, carry[1], token)
        return (logits, cache), logits if all_logits else None

    (last, cache), rest = jax.lax.scan(body, (first, cache), tokens[:, 1:].T)
    if all_logits:
        return jnp.concatenate([first[:, None], jnp.moveaxis(rest, 0, 1)], axis=1), cache
    return last, cache


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def _sample_step(model, params, cache, logits, temperature, top_k, top_p, rng, index, banned):
    token = sample(jnp.where(banned, -jnp.inf, logits), jax.random.fold_in(rng, index),
                   temperature, top_k, top_p)
    logits, cache = step(model, params, cache, token)
    return token, logits, cache


def generate(model, params, prompt, max_new_tokens: int, rng=None, *, temperature: float = 0.0,
             top_k: int = 0, top_p: float = 1.0, banned=(), callback=None):
    """Continues prompt (B, P) int (P >= 1) by max_new_tokens tokens.

    banned: token ids never produced (e.g. padding). callback(tokens (B,) numpy) is called as
    each token is chosen (streaming). Returns (new tokens (B, max_new_tokens) int32 numpy,
    stats {'prefill_s', 'decode_s', 'tokens_per_s'}), the times after compilation (the first
    sampling step is timed apart and left out of tokens_per_s).
    """
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be (batch, length >= 1) token ids, got shape {prompt.shape}")
    limit = capacity(model)
    if limit is not None and prompt.shape[1] + max_new_tokens > limit:
        raise ValueError(f"this model's cache holds {limit} tokens (model.max_len); the prompt "
                         f"({prompt.shape[1]}) plus {max_new_tokens} new tokens do not fit")
    rng = jax.random.PRNGKey(0) if rng is None else rng
    mask = np.zeros(model.config.vocab_size, bool)
    mask[list(banned)] = True
    banned = jnp.asarray(mask)
    start = time.perf_counter()
    logits, cache = feed(model, params, init_cache(model, params, prompt.shape[0]), prompt)
    logits.block_until_ready()
    prefill_s = time.perf_counter() - start
    out, timed_from = [], None
    for i in range(max_new_tokens):
        token, logits, cache = _sample_step(model, params, cache, logits, float(temperature),
                                            int(top_k), float(top_p), rng, np.int32(i), banned)
        token = np.asarray(token)
        out.append(token)
        if callback is not None:
            callback(token)
        if i == 0:
            timed_from = time.perf_counter()
    decode_s = time.perf_counter() - timed_from if timed_from is not None else 0.0
    rate = (max_new_tokens - 1) * prompt.shape[0] / decode_s if decode_s > 0 else 0.0
    tokens = np.stack(out, axis=1) if out else np.zeros((prompt.shape[0], 0), np.int32)
    return tokens, {"prefill_s": prefill_s, "decode_s": decode_s, "tokens_per_s": rate}
