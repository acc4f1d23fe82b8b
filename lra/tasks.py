"""LRATask: what an LRA task gives the engine (spade_jax.train.loop.Task), and its data folder.

Classification tasks feed the model (inputs, mask); retrieval feeds (inputs1, inputs2, mask1,
mask2). Loss: softmax cross-entropy; metrics: loss and accuracy, weighted so that the padding
examples of the last evaluation batch count for nothing.
"""
import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from lra.data import DataError, load_split, make_batches
from lra.data.specs import TASKS, get_spec
from spade_jax.runtime.paths import atomic_folder, cache_root
from spade_jax.train import job

RELEASE_LAYOUT = """the unpacked LRA release, e.g. DATA_DIR = .../lra_release/lra_release:
  DATA_DIR/listops-1000/basic_{train,val,test}.tsv
  DATA_DIR/tsv_data/new_aan_pairs.{train,eval,test}.tsv
  DATA_DIR/pathfinder32/curv_contour_length_14/{imgs,metadata}   (Pathfinder)
  DATA_DIR/pathfinder128/curv_contour_length_14/{imgs,metadata}  (Path-X)
  IMDB and CIFAR-10: prepared TFDS datasets, or DATA_DIR/aclImdb, DATA_DIR/cifar-10-batches-bin"""


def resolve_data_dir(config) -> str:
    """The data folder of a run: config.data_dir, or (quick / smoke variants with no data_dir) a
    generated default in the cache, written once and then reused."""
    if config.data_dir:
        if not os.path.isdir(config.data_dir):
            raise DataError(f"config.data_dir {config.data_dir!r} does not exist; expected "
                            f"{RELEASE_LAYOUT}")
        return config.data_dir
    spec = get_spec(config.task)
    if config.variant == "paper" or not config.generate or spec.generator is None:
        raise DataError(
            f"{config.task}: config.data_dir is not set. The full configs train on the real data: "
            f"download the LRA release and pass --config.data_dir=DATA_DIR, with {RELEASE_LAYOUT}\n"
            f"To try the pipeline without it, use the ':quick' variant (it generates its data), "
            f"or generate data with `python -m lra.generate --task={config.task} --out=DIR`.")
    options = config.generate.to_dict()
    num, seed = options.pop("num", spec.generator.default_num), options.pop("seed", 0)
    options = spec.generator.with_defaults(config.task, options)
    blob = json.dumps([config.task, num, seed, options], sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    folder = os.path.join(cache_root(), "lra_generated", f"{config.task}-{key}")
    if not os.path.isdir(folder):
        logging.info("generating the offline default for %s into %s", config.task, folder)
        print(f"lra: no data_dir given; generating the {config.task} offline default "
              f"({num} examples, seed {seed}, {options}) into {folder}", flush=True)
        # complete folders only; the hosts of a multi-process run may all generate at once
        with atomic_folder(folder, prefix=f".{config.task}-", what="the generated data",
                           hint="set $SPADE_JAX_CACHE to a writable folder") as tmp:
            spec.generator.run(config.task, tmp, num, seed, options)
    return folder


def from_config(config, data_dir: str | None = None) -> "LRATask":
    """The LRATask of an LRA config; data_dir: the folder to read (default config.data_dir, which
    may be empty when nothing is to be read: only the batch layout and the model's inputs and
    metrics are then used, as by `python -m spade_jax.aot`)."""
    return LRATask(config.task, config.data_dir if data_dir is None else data_dir,
                   config.data_options.to_dict(), cache_dir=config.data_cache_dir)


class LRATask:
    """The engine's view of one LRA task (see spade_jax.train.loop.Task)."""

    def __init__(self, task: str, data_dir: str, options: dict | None = None,
                 cache_dir: str | None = None):
        self.name, self.spec = task, get_spec(task)
        self.data_dir, self.options = data_dir, dict(options or {})
        self.cache_dir = cache_dir or None  # None: <data_dir>/.lra_cache
        self._sources = {}
        self.spec.length(self.options)  # the length options checked before anything is read

    def source(self, split):
        """The split's examples, read (and cached) at the first call; a line names the examples
        the reader cut, found empty or mostly out of vocabulary."""
        if split not in self._sources:
            source = self._sources[split] = load_split(self.name, split, self.data_dir,
                                                       cache_dir=self.cache_dir, **self.options)
            note = source.summary() if hasattr(source, "summary") else None
            if note and jax.process_index() == 0:
                print(f"lra: {self.name} {split}: {note}", flush=True)
        return self._sources[split]

    def check_model(self, cfg) -> None:
        """Raises a DataError naming the field when the model (a ModelConfig) cannot take the
        splits read so far: a label at or above model.num_classes, a token id at or above
        model.vocab_size (caught here, not as a non-finite loss at step 1)."""
        for split, source in self._sources.items():
            stats = getattr(source, "stats", None)
            if stats is None:
                continue
            where = f"{self.name} {split} ({self.data_dir})"
            if stats["max_target"] >= cfg.num_classes:
                raise DataError(
                    f"{where} has labels up to {stats['max_target']}, but model.num_classes is "
                    f"{cfg.num_classes}: set --config.model.num_classes="
                    f"{max(self.spec.num_classes, stats['max_target'] + 1)} (the task's "
                    f"{self.spec.num_classes} is the default)")
            largest = max(stats["max_id"].values(), default=0)
            if largest >= cfg.vocab_size:
                raise DataError(
                    f"{where} has token ids up to {largest}, but model.vocab_size is "
                    f"{cfg.vocab_size}: set --config.model.vocab_size="
                    f"{max(self.spec.vocab_size, largest + 1)} (the task's "
                    f"{self.spec.vocab_size} is the default)")

    def train_iterator(self, *, batch_size, seed, shard_index, shard_count):
        return iter(make_batches(self.source("train"), batch_size=batch_size, seed=seed,
                                 shard_index=shard_index, shard_count=shard_count))

    def eval_iterator(self, split, *, batch_size, shard_index, shard_count):
        return iter(make_batches(self.source(split), batch_size=batch_size, seed=0, shuffle=False,
                                 num_epochs=1, drop_remainder=False, shard_index=shard_index,
                                 shard_count=shard_count))

    def batch_spec(self, rows):
        """{field: jax.ShapeDtypeStruct} of a batch of `rows` (see lra.data.pipeline): token ids
        and masks (rows, length), targets and weights (rows,)."""
        shape = (rows, self.spec.length(self.options))
        suffixes = ("1", "2") if self.spec.dual else ("",)
        spec = {"targets": jax.ShapeDtypeStruct((rows,), jnp.int32),
                "weights": jax.ShapeDtypeStruct((rows,), jnp.float32)}
        for suffix in suffixes:
            spec["inputs" + suffix] = jax.ShapeDtypeStruct(shape, jnp.int32)
            spec["mask" + suffix] = jax.ShapeDtypeStruct(shape, jnp.bool_)
        return spec

    def model_inputs(self, batch):
        if self.spec.dual:
            return batch["inputs1"], batch["inputs2"], batch["mask1"], batch["mask2"]
        return batch["inputs"], batch["mask"]

    def sequences(self, batch):
        """The token arrays the model encodes (for tokens/s and FLOPs; masks excluded)."""
        return (batch["inputs1"], batch["inputs2"]) if self.spec.dual else (batch["inputs"],)

    def metrics(self, logits, batch):
        weights = batch["weights"].astype(jnp.float32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
        correct = (jnp.argmax(logits, -1) == batch["targets"]).astype(jnp.float32)
        count = weights.sum()
        return {"loss": ((loss * weights).sum(), count),
                "accuracy": ((correct * weights).sum(), count)}

    def majority_accuracy(self, split="test") -> float:
        """Accuracy of always predicting the most frequent class of `split`."""
        source = self.source(split)
        targets = np.asarray(source.arrays["targets"]) if hasattr(source, "arrays") else \
            np.array([source[i]["targets"] for i in range(len(source))])
        return float(np.bincount(targets).max() / len(targets))


job.register_task(TASKS, from_config)
