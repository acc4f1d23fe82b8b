"""The LM's model side: adaptive input / softmax against dense and hand-computed references,
the LanguageModel's per-target NLL, constant-memory decoding against the parallel forward."""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from spade_jax.model import adaptive, decode, families, models
from spade_jax.model.config import ModelConfig, S4Config

LM = dict(vocab_size=50, d_model=16, num_heads=2, d_ff=32, num_layers=2, radius=3, chunk_size=4,
          max_len=64, dropout=0.0, causal=True, head="lm", final_norm=False,
          s4=S4Config(d_state=8))


def lm(**kw):
    return ModelConfig(**{**LM, **kw})


def _tokens(shape, vocab, seed=0):
    return jax.random.randint(jax.random.PRNGKey(seed), shape, 1, vocab)


def _softmax_params(module, d, tied=None):
    h = jnp.zeros((1, d))
    return jax.jit(lambda tied: module.init(jax.random.PRNGKey(0), h, jnp.zeros((1,), jnp.int32),
                                            tied, method="nll"))(tied)


def test_without_cutoffs_the_adaptive_softmax_is_the_dense_softmax():
    d, vocab = 16, 37
    embed = adaptive.AdaptiveInput(vocab, d)
    e_vars = nn.unbox(jax.jit(embed.init)(jax.random.PRNGKey(1), jnp.zeros((1, 3), jnp.int32)))
    tables = embed.apply(e_vars, method="tables")
    assert len(tables) == 1 and tables[0][1] is None and tables[0][0].shape == (vocab, d)
    h = jax.random.normal(jax.random.PRNGKey(2), (10, d))
    targets = _tokens((10,), vocab, seed=3)
    softmax = adaptive.AdaptiveSoftmax(vocab, d)
    variables = _softmax_params(softmax, d, tables)
    assert not jax.tree_util.tree_leaves(variables)  # tied and no clusters: nothing of its own
    got = jax.jit(lambda h, t, tables: softmax.apply(variables, h, t, tables, method="nll"))(
        h, targets, tables)
    dense = jax.jit(lambda h, t, table: optax.softmax_cross_entropy_with_integer_labels(
        h @ table.T, t))(h, targets, tables[0][0])
    np.testing.assert_array_equal(got, dense)  # the same operations: bit for bit
    np.testing.assert_allclose(softmax.apply(variables, h, tables, method="log_probs"),
                               jax.nn.log_softmax(h @ tables[0][0].T), atol=1e-6)
    # The input side is the plain embedding (times sqrt(d), fairseq's embedding scale).
    tokens = _tokens((2, 4), vocab)
    np.testing.assert_allclose(embed.apply(e_vars, tokens), tables[0][0][tokens] * np.sqrt(d),
                               rtol=1e-6)


def _reference_nll(h, targets, cutoffs, vocab, tables, clusters):
    """fairseq's adaptive softmax in numpy, word by word: head softmax over [band-0 words,
    one logit per tail]; a tail word adds log_softmax of its tail cluster."""
    edges = [0, *cutoffs, vocab]
    out = np.zeros(targets.shape)
    for idx in np.ndindex(targets.shape):
        x, t = np.asarray(h[idx], np.float64), int(targets[idx])
        head = np.concatenate([np.asarray(tables[0][0]) @ x, np.asarray(clusters).T @ x])
        head_lp = head - np.log(np.exp(head - head.max()).sum()) - head.max()
        band = next(i for i in range(len(edges) - 1) if t < edges[i + 1])
        if band == 0:
            out[idx] = -head_lp[t]
            continue
        emb, proj = (np.asarray(a, np.float64) for a in tables[band])
        logits = emb @ (proj @ x)  # tied: the tail projection is P_i^T
        tail_lp = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        out[idx] = -(head_lp[cutoffs[0] + band - 1] + tail_lp[t - edges[band]])
    return out


@pytest.mark.parametrize("tied", [True, False])
def test_adaptive_softmax_matches_fairseq_semantics(tied):
    d, vocab, cutoffs, factor = 16, 40, (6, 15), 2
    embed = adaptive.AdaptiveInput(vocab, d, cutoffs, factor)
    e_vars = nn.unbox(jax.jit(embed.init)(jax.random.PRNGKey(1), jnp.zeros((1, 3), jnp.int32)))
    tables = embed.apply(e_vars, method="tables")
    assert [(e.shape, p.shape) for e, p in tables] == [((6, 16), (16, 16)), ((9, 8), (8, 16)),
                                                        ((25, 4), (4, 16))]
    softmax = adaptive.AdaptiveSoftmax(vocab, d, cutoffs, factor, tied=tied)
    tied_tables = tables if tied else None
    variables = nn.unbox(_softmax_params(softmax, d, tied_tables))
    params = variables["params"]
    own = sorted(params)
    assert own == (["clusters"] if tied else ["clusters", "head_words", "tail_1_embedding",
                                              "tail_1_projection", "tail_2_embedding",
                                              "tail_2_projection"])
    h = jax.random.normal(jax.random.PRNGKey(2), (3, 7, d))
    targets = jnp.arange(21).reshape(3, 7) * 2 % vocab  # every band
    apply = jax.jit(lambda v, h, t, tables: (softmax.apply(v, h, t, tables, method="nll"),
                                             softmax.apply(v, h, tables, method="log_probs")))
    got, log_probs = apply(variables, h, targets, tied_tables)
    ref_tables = tables if tied else [(params["head_words"], None)] + [
        (params[f"tail_{i}_embedding"], params[f"tail_{i}_projection"].T) for i in (1, 2)]
    want = _reference_nll(np.asarray(h), np.asarray(targets), cutoffs, vocab, ref_tables,
                          params["clusters"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert log_probs.shape == (3, 7, vocab)
    np.testing.assert_allclose(jax.nn.logsumexp(log_probs, axis=-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(-jnp.take_along_axis(log_probs, targets[..., None], -1)[..., 0],
                               got, atol=1e-5)


def test_adaptive_input_picks_each_band():
    d, vocab, cutoffs = 8, 20, (5, 12)
    embed = adaptive.AdaptiveInput(vocab, d, cutoffs, 2)
    variables = nn.unbox(jax.jit(embed.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32)))
    tables = embed.apply(variables, method="tables")
    tokens = jnp.array([[0, 4, 5, 11, 12, 19]])
    got = jax.jit(embed.apply)(variables, tokens)
    starts = [0, 5, 12]
    for j, t in enumerate(np.asarray(tokens[0])):
        band = int(np.searchsorted([5, 12], t, side="right"))
        emb, proj = tables[band]
        np.testing.assert_allclose(got[0, j], emb[t - starts[band]] @ proj * np.sqrt(d), rtol=1e-5)


def test_chunked_softmax_nll_equals_one_block_and_its_gradient():
    h = jax.random.normal(jax.random.PRNGKey(0), (37, 8))
    table = jax.random.normal(jax.random.PRNGKey(1), (50, 8))
    targets = _tokens((37,), 50)
    whole = lambda h, t: adaptive.softmax_nll(h, t, targets).sum()
    chunked = lambda h, t: adaptive.softmax_nll(h, t, targets, budget=50 * 6).sum()  # 7 chunks
    np.testing.assert_allclose(chunked(h, table), whole(h, table), rtol=1e-6)
    for a, b in zip(jax.grad(chunked, (0, 1))(h, table), jax.grad(whole, (0, 1))(h, table)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_adaptive_config_errors_name_the_field():
    with pytest.raises(ValueError, match="model.adaptive_cutoffs must be increasing"):
        lm(adaptive_cutoffs=(20, 10))
    with pytest.raises(ValueError, match=r"model.adaptive_cutoffs must .*vocab_size=50"):
        lm(adaptive_cutoffs=(20, 60))
    with pytest.raises(ValueError, match="head='lm'"):
        ModelConfig(adaptive_cutoffs=(5,))
    with pytest.raises(ValueError, match="model.adaptive_factor"):
        lm(adaptive_cutoffs=(5, 10), adaptive_factor=8)  # 16 // 64 = 0 dimensions


def test_adaptive_flops_match_xla():
    cfg = lm(adaptive_cutoffs=(40, 100), adaptive_factor=2, vocab_size=200, d_model=32)
    model = models.build_model(cfg)
    tokens = jnp.ones((2, 64), jnp.int32)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), tokens[:, :8])
    cost = jax.jit(lambda v, t: model.apply(v, t, None, t)).lower(variables, tokens).cost_analysis()
    xla = (cost[0] if isinstance(cost, list) else cost)["flops"]  # of the lowered program
    count = families.forward_flops(cfg, 64)
    analytic = 2 * count["per_sequence"] + count["per_step_fixed"]
    assert 0.9 < xla / analytic < 1.3


# Decoding: the recurrent view against the parallel forward.

DECODE_CASES = [
    dict(family="spade", adaptive_cutoffs=(10, 25), adaptive_factor=2),
    dict(family="spade", local_attention="chunk", combine="stack", norm="post"),
    dict(family="s4"), dict(family="transformer"),
]


@pytest.mark.parametrize("kw", DECODE_CASES, ids=lambda kw: "-".join(map(str, kw.values())))
def test_token_by_token_decoding_equals_the_parallel_forward(kw):
    """Also: the per-target NLL is the cross-entropy of the logits (adaptive and plain)."""
    cfg = lm(**kw)
    window = cfg.radius + 1
    length = 6 * window  # >= 2x the window (and several chunks)
    tokens = _tokens((2, length), cfg.vocab_size)
    model = models.build_model(cfg)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), tokens)["params"]
    targets = jnp.roll(tokens, -1, 1)
    parallel, nll = jax.jit(lambda p, t: (model.apply({"params": p}, t),
                                          model.apply({"params": p}, t, None, targets)))(
        params, tokens)
    np.testing.assert_allclose(
        nll, optax.softmax_cross_entropy_with_integer_labels(parallel, targets), rtol=1e-5)
    dm = decode.decoding_model(cfg)
    cache = decode.init_cache(dm, params, 2)
    stepped, after = decode.feed(dm, params, cache, tokens, True)
    np.testing.assert_allclose(stepped, parallel, atol=1e-4)
    shapes = jax.tree_util.tree_map(jnp.shape, cache)
    assert jax.tree_util.tree_map(jnp.shape, after) == shapes
    if cfg.family == "spade":  # on past max_len: the recurrence keeps going, the cache stays
        for _ in range(cfg.max_len // length + 1):
            stepped, after = decode.feed(dm, params, after, tokens, True)
        assert jax.tree_util.tree_map(jnp.shape, after) == shapes
        assert bool(jnp.isfinite(stepped).all()) and decode.capacity(dm) is None
        sizes = [x.shape for x in jax.tree_util.tree_leaves(after)]
        assert (2, window, cfg.num_heads, cfg.head_dim) in sizes  # the ring buffer
        assert max(np.prod(s) for s in sizes) <= cfg.d_model * cfg.s4.d_state ** 2  # S4's A_bar
    if cfg.adaptive_cutoffs:
        unboxed = nn.unbox(params)
        assert sorted(unboxed["encoder"]["embed"]) == [
            "band_0_embedding", "band_0_projection", "band_1_embedding", "band_1_projection",
            "band_2_embedding", "band_2_projection"]
        assert sorted(unboxed["softmax"]) == ["clusters"]  # everything else is tied


def test_transformer_cache_grows_to_max_len_and_says_when_full():
    cfg = lm(family="transformer", max_len=16)
    params = jax.jit(models.build_model(cfg).init)(jax.random.PRNGKey(0),
                                                  jnp.ones((1, 8), jnp.int32))["params"]
    model = decode.decoding_model(cfg, max_len=40)
    assert decode.capacity(model) == 40
    keys = decode.init_cache(model, params, 1)["encoder"]["layer_0"]["mixer"]["keys"]
    assert keys.shape == (1, 40, cfg.num_heads, cfg.head_dim)
    with pytest.raises(ValueError, match="cache holds 40 tokens"):
        decode.generate(model, params, jnp.ones((1, 30), jnp.int32), 11)


def test_generate_greedy_follows_the_parallel_argmax():
    cfg = lm(family="local", num_layers=1)
    params = jax.jit(models.build_model(cfg).init)(jax.random.PRNGKey(0),
                                                  jnp.ones((1, 8), jnp.int32))["params"]
    model = decode.decoding_model(cfg)
    prompt = _tokens((2, 5), cfg.vocab_size)
    seen = []
    greedy, stats = decode.generate(model, params, prompt, 6, banned=(0,), callback=seen.append)
    assert greedy.shape == (2, 6) and len(seen) == 6 and stats["tokens_per_s"] > 0
    full = jnp.concatenate([prompt, jnp.asarray(greedy)], 1)
    logits = jax.jit(models.build_model(cfg).apply)({"params": params}, full)
    want = jnp.argmax(logits[:, 4:-1].at[..., 0].set(-jnp.inf), -1)  # token 0 is banned
    np.testing.assert_array_equal(greedy, want)


def test_sample_top_k_and_top_p_keep_only_the_likely_tokens():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]] * 400))
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    assert set(np.asarray(decode.sample(logits, keys[0], 1.0, top_k=2)).tolist()) == {0, 1}
    assert set(np.asarray(decode.sample(logits, keys[1], 1.0, top_p=0.7)).tolist()) == {0, 1}
    assert set(np.asarray(decode.sample(logits, keys[2], 1.0)).tolist()) == {0, 1, 2, 3}
    assert set(np.asarray(decode.sample(logits, keys[0])).tolist()) == {0}


@pytest.mark.long  # 23 s on 2 cores
def test_decoding_many_s4_layers_does_not_hang():
    """Six S4 layers (64 x 64 dense systems) derive their recurrent views in one compiled
    init_cache. With jnp.linalg these were six LAPACK calls able to run at once, which
    deadlocked XLA's CPU thread pool when they outnumbered its threads (three could hang two
    cores). In a fresh process, so that a hang fails the test."""
    fields = {k: v for k, v in LM.items() if k != "s4"} | {"family": "s4", "num_layers": 6,
                                                            "d_model": 32}
    script = ("import jax, jax.numpy as jnp\n"
              "from spade_jax.model import decode, models\n"
              "from spade_jax.model.config import ModelConfig, S4Config\n"
              f"cfg = ModelConfig(**{fields!r}, s4=S4Config(d_state=64))\n"
              "model = models.build_model(cfg)\n"
              "tokens = jnp.ones((1, 8), jnp.int32)\n"
              "params = jax.jit(model.init)(jax.random.PRNGKey(0), tokens)['params']\n"
              "dm = decode.decoding_model(cfg)\n"
              "logits, _ = decode.feed(dm, params, decode.init_cache(dm, params, 1), tokens)\n"
              "assert bool(jnp.isfinite(logits).all())\n")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as users
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=240)  # run it (eight simulated devices did not hang)
    assert done.returncode == 0, done.stderr[-3000:]
