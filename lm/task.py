"""LMTask: what WikiText language modelling gives the engine (spade_jax.train.loop.Task), and the
corpus of a run's config.

Batches hold inputs, targets (B, seq_len) int32 and weights (B, seq_len) float32 (1 for a
scored target). The model gets (inputs, mask, targets) and returns each target's NLL (B, L);
'loss' and 'token_loss' are the weighted mean NLL per token, so the logs show perplexity.
"""
import os

import jax
import jax.numpy as jnp

from lm import corpus as corpus_lib
from lm.data import PAD_ID, DataError, TrainBlocks, eval_batches, prepare
from spade_jax.train import job

FULL_DATA = ("the full config trains on WikiText-103: pass --config.data_dir=DIR, a folder holding "
             "wiki.train.tokens, wiki.valid.tokens and wiki.test.tokens (the unpacked "
             "wikitext-103-v1.zip, or the Hugging Face dataset Salesforce/wikitext, config "
             "wikitext-103-v1, written one line per row). To try the pipeline without it, use the "
             "':quick' variant (it trains on an embedded stand-in corpus).")


def data_dir(config) -> str:
    """config.data_dir, or for quick / smoke variants without one the embedded stand-in."""
    if config.data_dir:
        return config.data_dir
    if config.variant == "paper":
        raise DataError(f"config.data_dir is not set: {FULL_DATA}")
    return corpus_lib.default_dir()


def load_corpus(config):
    """The prepared corpus of a run's config (tokenised once into the cache)."""
    options = config.data
    return prepare(data_dir(config), tokenizer=options.tokenizer, suffix=options.suffix,
                   unknown=options.unknown, cache_dir=options.cache_dir)


def check_corpus(config, corpus) -> None:
    """A DataError naming the file when the training split cannot fill one block of
    config.seq_len + 1 tokens (checked before the model's sizes, which such a corpus would
    otherwise be blamed for)."""
    tokens = corpus.info["splits"]["train"]["tokens"]
    if tokens < config.seq_len + 1:
        raise DataError(
            f"the training split of {corpus.info['data_dir']} (wiki.train.{config.data.suffix}) "
            f"has {tokens:,} tokens, fewer than one training block of config.seq_len + 1 = "
            f"{config.seq_len + 1:,}: use a larger corpus, or a smaller --config.seq_len")


def set_vocab_size(config, corpus) -> None:
    """config.model.vocab_size from the corpus (0 in the configs: 'from the data')."""
    size = len(corpus.vocab)
    if config.model.vocab_size not in (0, size):
        raise DataError(f"config.model.vocab_size is {config.model.vocab_size} but the "
                        f"vocabulary of {corpus.info['data_dir']} has {size} entries (with "
                        f"<pad>); leave it at 0 to take it from the data")
    config.model.vocab_size = size


# WikiText-103's word vocabulary as lm.data builds it: 267,735 types (end-of-line token included)
# plus <pad>; what a full config's model.vocab_size = 0 ("from the data") means when no data is
# read (`from_config`).
WIKITEXT103_VOCAB = 267_736


def from_config(config) -> "LMTask":
    """An LMTask of `config` that reads no data (corpus None: the batch layout, the model's inputs
    and metrics, as `python -m spade_jax.aot` compiles them). model.vocab_size 0 ("from the
    data") becomes WikiText-103's word vocabulary, or the byte vocabulary for tokenizer 'byte'."""
    if not config.model.vocab_size:
        byte = config.data.tokenizer == "byte"
        config.model.vocab_size = 257 if byte else WIKITEXT103_VOCAB
        print(f"lm: model.vocab_size 0 (from the data) taken as {config.model.vocab_size:,}, "
              f"{'the byte vocabulary' if byte else 'the WikiText-103 word vocabulary'}; "
              f"set --config.model.vocab_size for another corpus", flush=True)
    return LMTask(None, config.seq_len, config.eval_context)


class LMTask:
    """The engine's view of a corpus: training blocks and context-window evaluation (corpus None:
    shapes only, see `from_config`)."""

    def __init__(self, corpus, seq_len: int, context: int):
        self.corpus, self.seq_len, self.context = corpus, int(seq_len), int(context)
        if not 0 <= self.context < self.seq_len:
            raise DataError(f"config.eval_context ({context}) must be in [0, config.seq_len = "
                            f"{seq_len})")

    def train_iterator(self, *, batch_size, seed, shard_index, shard_count):
        return TrainBlocks(self.corpus.stream("train"), self.seq_len, batch_size, seed,
                           shard_index, shard_count)

    def eval_iterator(self, split, *, batch_size, shard_index, shard_count):
        return eval_batches(self.corpus.stream(split), seq_len=self.seq_len, context=self.context,
                            batch_size=batch_size, bos_id=self.corpus.vocab.eos_id,
                            shard_index=shard_index, shard_count=shard_count)

    def batch_spec(self, rows):
        """{field: jax.ShapeDtypeStruct} of a batch of `rows`: inputs, targets (rows, seq_len)
        int32, weights (rows, seq_len) float32 (training blocks and evaluation windows alike)."""
        shape = (rows, self.seq_len)
        return {"inputs": jax.ShapeDtypeStruct(shape, jnp.int32),
                "targets": jax.ShapeDtypeStruct(shape, jnp.int32),
                "weights": jax.ShapeDtypeStruct(shape, jnp.float32)}

    def model_inputs(self, batch):
        return batch["inputs"], batch["inputs"] != PAD_ID, batch["targets"]

    def sequences(self, batch):
        return (batch["inputs"],)

    def metrics(self, nll, batch):
        weights = batch["weights"].astype(jnp.float32)
        total, count = (nll * weights).sum(), weights.sum()
        return {"loss": (total, count), "token_loss": (total, count)}


def describe(corpus) -> str:
    info = corpus.info
    return (f"{info['data_dir']} ({info['tokenizer']} tokens; vocabulary {len(corpus.vocab):,}; "
            f"train / valid / test {info['splits']['train']['tokens']:,} / "
            f"{info['splits']['valid']['tokens']:,} / {info['splits']['test']['tokens']:,}; "
            f"cache {os.path.basename(corpus.path)})")


job.register_task(("wikitext103",), from_config)
