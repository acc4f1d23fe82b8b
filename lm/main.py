"""Train and evaluate a language model on WikiText-103 (or any folder in its format).

    python -m lm.main --config=configs/wikitext103.py --config.data_dir=WIKITEXT103 --workdir=DIR
    python -m lm.main --config=configs/wikitext103.py:quick --workdir=runs/wt103-quick
    python -m lm.main --config=configs/wikitext103.py:model=transformer,quick --workdir=DIR

Any config field can be overridden (`--config.batch_size=8`). Rerunning the same command
resumes from the last checkpoint in --workdir. At the end, WORKDIR/results.json holds the valid
and test perplexities (best-validation and last checkpoint) beside the unigram baseline's.
"""
if __name__ == "__main__":  # before the heavy imports: on a CPU host, restart once with jemalloc
    from spade_jax.runtime import allocator  # preloaded (spade_jax/runtime/allocator.py); nothing otherwise
    allocator.reexec_if_needed()

import math
import sys

import jax
import numpy as np
from ml_collections import config_flags

from lm import data
from lm.task import LMTask, check_corpus, describe, load_corpus, set_vocab_size
from spade_jax.runtime.process import start_process, stopped_early
from spade_jax.runtime import cli, paths
from spade_jax.train import plots
from spade_jax.runtime.errors import ConfigError
from spade_jax.train import metrics
from spade_jax.train.loop import train_and_evaluate


def define_flags(flag_values, argv):
    cli.define_config(flag_values, argv, "Experiment config (configs/wikitext103.py).")


def _train_tokens_per_s(workdir) -> float:
    """Median training tokens/s of the logged intervals (the first, with compilation, left out)."""
    rates = [r["tokens_per_s"] for r in metrics.read_records(workdir)
             if r["split"] == "train" and r.get("tokens_per_s")]
    return float(np.median(rates)) if rates else 0.0


def summarize(workdir, config, results, corpus) -> dict:
    """Adds perplexities, the unigram baseline and throughput to results.json, draws
    WORKDIR/learning_curve.png (training loss, validation perplexity); prints them."""
    ppl = lambda metrics: math.exp(min(metrics["token_loss"], 50.0))
    summary = {
        "task": config.task, "model": config.model_name, "variant": config.variant,
        "corpus": corpus.info["data_dir"], "tokenizer": corpus.tokenizer,
        "vocab_size": len(corpus.vocab),
        "unigram_perplexity": {s: math.exp(data.unigram_nll(corpus, s)) for s in ("valid", "test")},
        "test_perplexity_last": ppl(results["last"]["test"]),
        "train_tokens_per_s": _train_tokens_per_s(workdir),
    }
    if "best" in results:
        summary["validation_perplexity_best"] = math.exp(-results["best"]["validation_score"])
        summary["test_perplexity_best"] = ppl(results["best"]["test"])
    results = {**results, **summary}
    path = paths.workdir_path(workdir) / "results.json"
    paths.write_json(path, results)
    plots.learning_curve(workdir, validation="perplexity", title=plots.run_title(
        config.task, config.model_name, config.variant, results.get("parameters"),
        results.get("steps")))
    best = summary.get("test_perplexity_best", summary["test_perplexity_last"])
    print(f"{config.model_name} ({config.variant}): valid perplexity "
          f"{summary.get('validation_perplexity_best', float('nan')):.2f}, test perplexity "
          f"{best:.2f} (best-validation checkpoint; last {summary['test_perplexity_last']:.2f}); "
          f"unigram baseline valid {summary['unigram_perplexity']['valid']:.2f} / test "
          f"{summary['unigram_perplexity']['test']:.2f}; {summary['train_tokens_per_s']:,.0f} "
          f"training tokens/s. Results: {path}", flush=True)
    return results


def main(FLAGS):
    config = FLAGS.config
    if config.get("task") != "wikitext103" or "data" not in config:
        raise ConfigError(f"--config={config_flags.get_config_filename(FLAGS['config'])} is a "
                          f"config of task {config.get('task')!r}, not a language-model config "
                          f"(configs/wikitext103.py); train LRA tasks with python -m lra.main")
    start_process()
    corpus = load_corpus(config)
    check_corpus(config, corpus)
    set_vocab_size(config, corpus)
    print(f"lm: {describe(corpus)}", flush=True)
    task = LMTask(corpus, config.seq_len, config.eval_context)
    results = train_and_evaluate(config, FLAGS.workdir, task)
    stopped = stopped_early(results)
    if stopped is not None:
        return stopped
    if jax.process_index() == 0:
        summarize(FLAGS.workdir, config, results, corpus)


def run(argv) -> int:
    """The command line `python -m lm.main ARGS` (argv[0] is the program), in this process."""
    return cli.run_absl(argv, define_flags, main, __doc__)


if __name__ == "__main__":
    sys.exit(run(sys.argv))
