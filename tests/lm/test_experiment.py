"""The LM experiment end to end: configs, perplexity evaluation against hand-computed values,
the smoke run through `python -m lm.main`, evaluation and generation of that run."""
import dataclasses
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import configs, data, evaluate, runs, task as task_lib
from spade_jax.train import config_builder
from spade_jax.model import families, models
from spade_jax.runtime import local_cluster
from spade_jax.model.config import ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "tests", "lm", "fixture")
CONFIG = os.path.join(ROOT, "configs", "wikitext103.py")


def _config(arg=None):
    return config_builder.load(CONFIG, arg)


@pytest.mark.parametrize("family", families.lm_families())
@pytest.mark.parametrize("variant", ["", "quick", "smoke"])
def test_every_family_and_variant_builds(family, variant):
    config = _config(f"model={family}" + (f",{variant}" if variant else ""))
    config.model.vocab_size = 267_736 if not variant else 12_000
    model = ModelConfig.from_config(config.model)
    assert config.model_name == family and model.family == families.model_fields(family)["family"]
    assert model.causal and model.head == "lm"
    assert model.max_len == config.seq_len and not model.final_norm
    if not variant:  # the recipe of spade.md / wikitext103.md
        assert (model.num_layers, model.d_model, model.d_ff, model.num_heads) == (16, 1024, 4096, 8)
        assert model.adaptive_cutoffs == (20000, 60000) and model.tie_embeddings
        assert (config.seq_len, config.eval_context) == (3072, 2560)
        assert config.num_train_steps == 286_000
        assert (config.optimizer.name, config.optimizer.learning_rate,
                config.optimizer.clip_norm) == ("sgd", 1.0, 0.1)
    docstring = open(CONFIG).read().split('"""')[1]
    for needed in ("python -m lm.main --config=configs/wikitext103.py", "hours",
                   "Published test perplexities", ":quick", "NOT\nWikiText-103"):
        assert needed in docstring
    with pytest.raises(ValueError, match="unknown model family 'mega'"):
        _config("model=mega")
    with pytest.raises(ValueError, match="config.model.num_layer: .*closest: num_layers"):
        configs.build("quick", paper={"model.num_layer": 2}, quick={}, smoke={})


def test_paper_config_without_data_says_what_to_download():
    with pytest.raises(data.DataError, match=r"config.data_dir is not set.*wiki.train.tokens.*"
                                             r"wikitext-103-v1.*':quick'"):
        task_lib.data_dir(_config())


def _run(params_fn, cache, *, family="local", seq_len=16, context=8, **model):
    """A Run on the fixture with parameters from params_fn(initial params)."""
    config = _config(f"model={family},smoke")
    config.data_dir, config.data.cache_dir = FIXTURE, cache
    config.seq_len, config.eval_context = seq_len, context
    config.model.update(dict(num_layers=1, **model))
    corpus = task_lib.load_corpus(config)
    task_lib.set_vocab_size(config, corpus)
    cfg = ModelConfig.from_config(config.model)
    params = jax.jit(models.build_model(cfg).init)(jax.random.PRNGKey(0),
                                                  jnp.ones((1, 8), jnp.int32))["params"]
    return runs.Run(config, corpus, cfg, params_fn(jax.device_get(params)), 0, "test")


def _zeros(params):
    return jax.tree_util.tree_map(np.zeros_like, params)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(tmp_path):
    run = _run(_zeros, str(tmp_path), adaptive_cutoffs=())  # every logit 0
    result = evaluate.perplexity(run, "test")
    assert result["tokens"] == len(run.corpus.stream("test"))
    assert result["perplexity"] == pytest.approx(len(run.corpus.vocab), rel=1e-5)


def test_perplexity_of_a_zero_adaptive_softmax_by_hand(tmp_path):
    """All logits 0 with cutoffs (20, 60) and 125 words: p = 1/22 in the head (20 words + 2
    clusters), 1/22 * 1/40 in the first tail, 1/22 * 1/65 in the second."""
    run = _run(_zeros, str(tmp_path), adaptive_cutoffs=(20, 60))
    test = np.asarray(run.corpus.stream("test"))
    log_p = np.where(test < 20, -np.log(22), np.where(test < 60, -np.log(22 * 40),
                                                      -np.log(22 * 65)))
    by_hand = math.exp(-log_p.mean())
    assert evaluate.perplexity(run, "test")["perplexity"] == pytest.approx(by_hand, rel=1e-5)


def test_perplexity_of_a_unigram_model_by_hand(tmp_path):
    corpus = data.prepare(FIXTURE, cache_dir=str(tmp_path))
    counts = corpus.vocab.counts
    log_p = np.log(np.maximum(counts, 1) / counts.sum())
    log_p[data.PAD_ID] = -1e9  # never seen: probability 0

    def unigram(params):  # logits = bias = log p(word) whatever the input
        params = _zeros(params)
        params["logits"]["bias"] = log_p.astype(np.float32)
        return params

    run = _run(unigram, str(tmp_path), tie_embeddings=False, adaptive_cutoffs=())
    valid = corpus.stream("valid")
    by_hand = math.exp(-sum(log_p[t] for t in valid) / len(valid))
    assert evaluate.perplexity(run, "valid")["perplexity"] == pytest.approx(by_hand, rel=1e-5)


def test_context_windows_give_the_one_pass_perplexity_when_context_covers_the_radius(tmp_path):
    """Local attention (radius 3) sees nothing beyond 8 tokens of context: scoring the split in
    windows must give exactly the NLL of one pass over the whole split."""
    run = _run(lambda p: p, str(tmp_path), family="local", seq_len=16, context=8)
    windows = evaluate.perplexity(run, "train")
    stream = np.asarray(run.corpus.stream("train"))
    cfg = dataclasses.replace(run.model_config, max_len=len(stream))
    inputs = np.concatenate([[run.corpus.vocab.eos_id], stream[:-1]])[None]
    nll = jax.jit(models.build_model(cfg).apply)({"params": run.params}, inputs, None,
                                                   stream[None])
    assert windows["nll_per_token"] == pytest.approx(float(nll.mean()), rel=1e-5)
    assert windows["tokens"] == len(stream)


def _env(cache):
    return dict(local_cluster.cpu_env(1), SPADE_JAX_CACHE=cache, PYTHONPATH=ROOT)


def test_smoke_run_through_lm_main_then_evaluate_and_generate(tmp_path):
    workdir, cache = str(tmp_path / "run"), str(tmp_path / "cache")
    main = subprocess.run(
        [sys.executable, "-m", "lm.main", "--config=configs/wikitext103.py:smoke",
         f"--config.data_dir={FIXTURE}", "--config.max_eval_batches=0", f"--workdir={workdir}"],
        cwd=ROOT, env=_env(cache), capture_output=True, text=True, timeout=300)
    assert main.returncode == 0, main.stdout + main.stderr
    assert "test perplexity" in main.stdout and "unigram baseline" in main.stdout
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    assert results["steps"] == 2 and results["vocab_size"] == 125
    assert results["unigram_perplexity"]["test"] < 125 < results["test_perplexity_last"] < 1e4
    assert results["train_tokens_per_s"] > 0
    assert open(os.path.join(workdir, "learning_curve.png"), "rb").read(4) == b"\x89PNG"
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        record = [r for r in map(json.loads, f) if r["split"] == "train"][-1]
    assert record["tokens_per_s"] == pytest.approx(record["steps_per_s"] * 4 * 32)  # inputs only
    # lm.evaluate's reading of the run scores the whole test split as the engine did.
    run = runs.load_run(workdir, "last")
    assert run.step == 2 and run.model_config.adaptive_cutoffs == (20, 60)
    again = evaluate.perplexity(run, "test")
    assert again["perplexity"] == pytest.approx(results["test_perplexity_last"], rel=1e-4)
    generate = subprocess.run(
        [sys.executable, "-m", "lm.generate", f"--workdir={workdir}", "--prompt",
         "The tidal mill", "--max_new_tokens", "12", "--temperature", "0.9", "--top_k", "20"],
        cwd=ROOT, env=_env(cache), capture_output=True, text=True, timeout=300)
    assert generate.returncode == 0, generate.stdout + generate.stderr
    text, stats = generate.stdout.rsplit("\n[", 1)
    assert text.startswith("The tidal mill") and len(text.split()) >= 4
    assert "12 tokens" in stats and "tokens/s" in stats and "constant" in stats
