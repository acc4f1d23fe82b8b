"""A tiny deterministic classification task for engine tests, and a runner for subprocesses.

Label: 1 if token 1 occurs more often than token 2 in the sequence, else 0. Batch n of the train
stream is a pure function of (seed, n), so the iterator's state is just n.
"""
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

LENGTH, VOCAB = 32, 8


def _examples(seed, index, rows):
    rng = np.random.default_rng([seed, index])
    inputs = rng.integers(1, VOCAB, (rows, LENGTH)).astype(np.int32)
    targets = ((inputs == 1).sum(1) > (inputs == 2).sum(1)).astype(np.int32)
    return inputs, targets


class StreamIterator:
    def __init__(self, seed, batch_size, shard_index, shard_count, nan_at=None):
        self.seed, self.batch, self.index = seed, batch_size, 0
        self.shard_index, self.shard_count, self.nan_at = shard_index, shard_count, nan_at

    def __iter__(self):
        return self

    def __next__(self):
        rows = self.batch * self.shard_count
        inputs, targets = _examples(self.seed, self.index, rows)
        part = slice(self.shard_index * self.batch, (self.shard_index + 1) * self.batch)
        batch = {"inputs": inputs[part], "targets": targets[part],
                 "weights": np.ones(self.batch, np.float32)}
        if self.nan_at is not None and self.index == self.nan_at:
            batch["weights"] = batch["weights"] * np.nan
        self.index += 1
        return batch

    def get_state(self):
        return {"index": self.index}

    def set_state(self, state):
        self.index = int(state["index"])


class SyntheticTask:
    def __init__(self, nan_at=None):
        self.nan_at = nan_at

    def train_iterator(self, *, batch_size, seed, shard_index, shard_count):
        return StreamIterator(seed, batch_size, shard_index, shard_count, self.nan_at)

    def eval_iterator(self, split, *, batch_size, shard_index, shard_count):
        seed = {"validation": 10_001, "test": 10_002}[split]
        it = StreamIterator(seed, batch_size, shard_index, shard_count)
        return [next(it) for _ in range(2)]

    def batch_spec(self, rows):
        return {"inputs": jax.ShapeDtypeStruct((rows, LENGTH), jnp.int32),
                "targets": jax.ShapeDtypeStruct((rows,), jnp.int32),
                "weights": jax.ShapeDtypeStruct((rows,), jnp.float32)}

    def model_inputs(self, batch):
        return (batch["inputs"],)

    def metrics(self, logits, batch):
        weights = batch["weights"].astype(jnp.float32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
        correct = (logits.argmax(-1) == batch["targets"]).astype(jnp.float32)
        count = weights.sum()
        return {"loss": ((loss * weights).sum(), count), "accuracy": ((correct * weights).sum(), count)}


def small_config(**overrides):
    from spade_jax.train.defaults import default_config
    c = default_config()
    c.model.update(dict(vocab_size=VOCAB, d_model=16, num_heads=2, d_ff=32, num_layers=2,
                        radius=3, max_len=LENGTH, dropout=0.1, num_classes=2))
    c.model.s4.d_state = 4
    c.batch_size = 8
    c.num_train_steps = 6
    c.optimizer.warmup_steps = 2
    c.optimizer.learning_rate = 3e-3
    c.log_every = 1
    c.eval_every = 3
    c.checkpoint_every = 2
    c.async_checkpoints = False
    c.show_steps = False
    c.peak_flops = 1e11
    for key, value in overrides.items():
        target = c
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
    return c


def main():
    """python synthetic.py WORKDIR JSON_OVERRIDES: trains and prints the results as JSON."""
    from spade_jax.train.loop import train_and_evaluate
    workdir, overrides = sys.argv[1], json.loads(sys.argv[2])
    results = train_and_evaluate(small_config(**overrides), workdir, SyntheticTask())
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
