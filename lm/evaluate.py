"""Perplexity of a trained run, with fairseq's context window.

    python -m lm.evaluate --workdir=RUN --split=test
    python -m lm.evaluate --workdir=RUN --split=valid --checkpoint=last --context=1024

Every token of the split is scored once, from up to `context` earlier tokens (see
lm.data.eval_window); the first is predicted after an end of line. Prints the mean NLL, the
perplexity per token and, for the byte tokenizer, per word (total NLL / word tokens, end-of-line
tokens included) and bits per byte; writes RUN/eval_<split>_<checkpoint>.json.
"""
import dataclasses
import math
import sys
import time

import jax
from absl import flags

from lm import data
from lm.runs import Run, load_run
from lm.task import LMTask
from spade_jax.runtime import cli, paths
from spade_jax.model import models
from spade_jax.runtime.errors import ConfigError
from spade_jax.train import steps


def perplexity(run: Run, split: str, *, context: int | None = None, batch_size: int = 0) -> dict:
    """Scores `split` with the run's seq_len and `context` (default: the run's eval_context)."""
    config = run.config
    context = config.eval_context if context is None or context < 0 else context
    task = LMTask(run.corpus, config.seq_len, context)
    model = models.build_model(dataclasses.replace(run.model_config, remat="none"))
    eval_step = jax.jit(steps.make_eval_step(model, task))
    batch_size = batch_size or config.eval_batch_size or config.batch_size
    start = time.perf_counter()
    total = count = 0.0
    for batch in task.eval_iterator(split, batch_size=batch_size, shard_index=0, shard_count=1):
        sums = jax.device_get(eval_step(run.params, batch))
        total, count = total + float(sums["loss"][0]), count + float(sums["loss"][1])
    stream = run.corpus.stream(split)
    if int(count) != len(stream):
        raise AssertionError(f"scored {count} of {len(stream)} tokens")
    result = {"split": split, "checkpoint": run.checkpoint, "step": run.step,
              "seq_len": config.seq_len, "context": context, "tokens": int(count),
              "nll_per_token": total / count, "perplexity": math.exp(min(total / count, 50.0)),
              "unigram_perplexity": math.exp(data.unigram_nll(run.corpus, split)),
              "seconds": time.perf_counter() - start}
    if run.corpus.tokenizer == "byte":
        words = run.corpus.words(split)
        result.update(words=words, word_perplexity=math.exp(min(total / words, 50.0)),
                      bits_per_byte=total / count / math.log(2))
    return result


def define_flags(flag_values, argv):
    """The command line's flags, on `flag_values` (see spade_jax.runtime.cli.run_absl)."""
    del argv
    on = dict(flag_values=flag_values)
    cli.define_workdir(flag_values, "Run directory of lm.main.")
    flags.DEFINE_enum("split", "test", ["valid", "test"], "Split to score.", **on)
    flags.DEFINE_enum("checkpoint", "best", ["best", "last"],
                      "Best-validation or latest checkpoint.", **on)
    flags.DEFINE_integer("context", -1, "Context tokens before each scored window (-1: the run's "
                         "eval_context).", **on)
    flags.DEFINE_integer("batch_size", 0, "Windows per batch (0: the run's eval batch size).",
                         **on)


def check_flags(FLAGS):
    """The flag values that no run can take, refused before the run is read."""
    if FLAGS.batch_size < 0:
        raise ConfigError(f"--batch_size must be >= 0 (0: the run's eval batch size), got "
                          f"{FLAGS.batch_size}")
    if FLAGS.context < -1:
        raise ConfigError(f"--context must be >= 0, or -1 for the run's eval_context, got "
                          f"{FLAGS.context}")


def main(FLAGS):
    check_flags(FLAGS)
    run = load_run(FLAGS.workdir, FLAGS.checkpoint)
    if FLAGS.context >= run.config.seq_len:
        raise ConfigError(f"--context ({FLAGS.context}) must be below the run's seq_len "
                          f"({run.config.seq_len}): each window scores seq_len - context tokens")
    result = perplexity(run, FLAGS.split, context=FLAGS.context, batch_size=FLAGS.batch_size)
    extra = (f", per word {result['word_perplexity']:.2f}, {result['bits_per_byte']:.3f} bits per "
             f"byte" if "word_perplexity" in result else "")
    print(f"{FLAGS.split} ({run.checkpoint} checkpoint, step {run.step}; context "
          f"{result['context']} in {result['seq_len']}-token windows): perplexity {result['perplexity']:.2f} over "
          f"{result['tokens']:,} tokens{extra} (unigram baseline "
          f"{result['unigram_perplexity']:.2f})", flush=True)
    paths.write_json(paths.workdir_path(FLAGS.workdir) / f"eval_{FLAGS.split}_{run.checkpoint}.json",
                     result)


def run(argv) -> int:
    """The command line `python -m lm.evaluate ARGS` (argv[0] is the program), in this process."""
    return cli.run_absl(argv, define_flags, main, __doc__)


if __name__ == "__main__":
    sys.exit(run(sys.argv))
