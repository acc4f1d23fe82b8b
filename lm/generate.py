"""Generate text with a trained run, through the model's recurrent view.

    python -m lm.generate --workdir=RUN --prompt "The tide mill" --max_new_tokens 100
    python -m lm.generate --workdir=RUN --prompt "..." --temperature 0.8 --top_k 40 --top_p 0.95

Greedy by default. The spade, local and s4 families decode with a constant-size cache (S4's
recurrent state, a ring buffer of radius + 1 keys / values per attention layer): memory and time
per token do not grow with the text. The transformer keeps every previous key and value (its
cache holds --max_len tokens, default the training max_len or what the text needs).
Word-level prompts are tokenised as WikiText is (`do n't`, `@-@`); words outside the vocabulary
become <unk>. The text is streamed as it is produced; the last line gives tokens/s and the
cache's size.
"""
import codecs
import sys

import jax
import numpy as np
from absl import flags

from lm import corpus as corpus_lib
from lm.data import PAD_ID, UNK, DataError
from lm.runs import load_run
from spade_jax.runtime import cli
from spade_jax.model import decode
from spade_jax.runtime.errors import ConfigError


def define_flags(flag_values, argv):
    """The command line's flags, on `flag_values` (see spade_jax.runtime.cli.run_absl)."""
    del argv
    on = dict(flag_values=flag_values)
    cli.define_workdir(flag_values, "Run directory of lm.main.")
    flags.DEFINE_string("prompt", "", "Text to continue (empty: start after an end of line).",
                        **on)
    flags.DEFINE_integer("max_new_tokens", 100, "Tokens to generate (>= 1).", **on)
    flags.DEFINE_float("temperature", 0.0, "0: greedy; > 0: sample from softmax(logits / T).",
                       **on)
    flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens (0: all).", **on)
    flags.DEFINE_float("top_p", 1.0, "Sample among the most likely tokens holding this mass, "
                       "in (0, 1].", **on)
    flags.DEFINE_integer("seed", 0, "Sampling seed.", **on)
    flags.DEFINE_integer("max_len", 0, "Transformer family: cache size (0: what the text needs, "
                         "at least the training max_len).", **on)
    flags.DEFINE_enum("checkpoint", "best", ["best", "last"],
                      "Best-validation or latest checkpoint.", **on)


def check_flags(FLAGS):
    """The flag values no run can take, refused before the run is read."""
    rules = [("max_new_tokens", FLAGS.max_new_tokens >= 1, ">= 1"),
             ("temperature", FLAGS.temperature >= 0, ">= 0 (0: greedy)"),
             ("top_k", FLAGS.top_k >= 0, ">= 0 (0: all tokens)"),
             ("top_p", 0 < FLAGS.top_p <= 1, "in (0, 1] (1: all tokens)"),
             ("max_len", FLAGS.max_len >= 0, ">= 0 (0: what the text needs)")]
    for name, ok, rule in rules:
        if not ok:
            raise ConfigError(f"--{name} must be {rule}, got {FLAGS[name].value}")
    if FLAGS.temperature == 0 and (FLAGS.top_k or FLAGS.top_p < 1):
        raise ConfigError(f"--top_k / --top_p choose among tokens to sample: they need "
                          f"--temperature > 0 (0 is greedy), got --temperature=0 with "
                          f"--top_k={FLAGS.top_k} --top_p={FLAGS.top_p}")


def prompt_ids(vocab, prompt: str) -> tuple:
    """(ids (n,) int32 beginning with the end-of-line token, [unknown words])."""
    unknown = []
    if vocab.tokenizer == "word":
        lines = [corpus_lib.tokenize(line) for line in prompt.split("\n")]
        unknown = sorted({w for line in lines for w in line if w not in vocab.index})
        if unknown and UNK not in vocab.index:
            raise DataError(f"--prompt: {unknown[:5]} not in the run's vocabulary ({len(vocab):,} "
                            f"types, no {UNK}); use words of its training text")
        prompt = "\n".join(" ".join(line) for line in lines)
    ids = vocab.encode(prompt, unknown="unk" if UNK in (vocab.index or {}) else "error")
    return np.concatenate([[vocab.eos_id], ids]).astype(np.int32), unknown


def cache_bytes(cache) -> int:
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(cache)))


def main(FLAGS):
    check_flags(FLAGS)
    run = load_run(FLAGS.workdir, FLAGS.checkpoint)
    vocab = run.corpus.vocab
    ids, unknown = prompt_ids(vocab, FLAGS.prompt)
    if unknown:
        print(f"[not in the vocabulary, read as {UNK}: {' '.join(unknown[:20])}]", file=sys.stderr)
    needed = max(FLAGS.max_len, len(ids) + FLAGS.max_new_tokens)
    model = decode.decoding_model(run.model_config, max_len=needed)
    sys.stdout.write(FLAGS.prompt)
    separator = " " if vocab.tokenizer == "word" and FLAGS.prompt else ""

    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def show(token):
        nonlocal separator
        if vocab.tokenizer == "byte":  # a character may take several tokens
            sys.stdout.write(utf8.decode(bytes([int(token[0]) - 1])))
        else:
            text = vocab.decode(token[:1])
            sys.stdout.write(separator + text if text != "\n" else "\n")
            separator = "" if text == "\n" else " "
        sys.stdout.flush()

    _, stats = decode.generate(model, run.params, ids[None], FLAGS.max_new_tokens,
                               jax.random.PRNGKey(FLAGS.seed), temperature=FLAGS.temperature,
                               top_k=FLAGS.top_k, top_p=FLAGS.top_p, banned=(PAD_ID,),
                               callback=show)
    size = cache_bytes(decode.init_cache(model, run.params, 1))
    limit = decode.capacity(model)
    print(f"\n[{run.model_config.family}: {FLAGS.max_new_tokens} tokens, "
          f"{stats['tokens_per_s']:.1f} tokens/s after the first; prompt {len(ids)} tokens in "
          f"{stats['prefill_s']:.2f} s (with compilation); cache {size / 2**20:.2f} MiB, "
          f"{'constant' if limit is None else f'room for {limit} tokens'}]", flush=True)


def run(argv) -> int:
    """The command line `python -m lm.generate ARGS` (argv[0] is the program), in this process."""
    return cli.run_absl(argv, define_flags, main, __doc__)


if __name__ == "__main__":
    sys.exit(run(sys.argv))
