"""Evaluation of a split: the task's per-batch metric sums, summed over the split's batches.

`Evaluator(job, ...)(split, params)` jits the job's eval step once (spade_jax.train.job:
parameters on the state's shardings, batches over the data-parallel axes) and returns the
split's means, with 'perplexity' for a task that reports a per-token loss and 'scored' (the
examples, or tokens, the loss counted).
"""
import jax

from spade_jax.train import sharding
from spade_jax.train.metrics import with_perplexity


class Evaluator:
    """evaluator(split, params) -> {metric: mean over the split, 'scored': count}.

    `shard` is {shard_index, shard_count} of this host; `batch_size` its rows per batch;
    `max_batches` > 0 stops a split early."""

    def __init__(self, job, *, batch_size: int, shard: dict, max_batches: int = 0):
        self.job, self.task = job, job.task
        self.batch_size, self.shard, self.max_batches = batch_size, shard, max_batches
        with job.context():
            self.step = job.eval_step()

    def sums(self, split: str, params) -> dict:
        """{name: (sum, count)} over the split (floats, summed on the host)."""
        totals = {}
        batches = self.task.eval_iterator(split, batch_size=self.batch_size, **self.shard)
        for i, batch in enumerate(batches):
            if self.max_batches and i >= self.max_batches:
                break
            with self.job.context():
                sums = self.step(params, sharding.place_batch(batch, self.job.mesh))
            for name, (s, c) in jax.device_get(sums).items():
                prev = totals.get(name, (0.0, 0.0))
                totals[name] = (prev[0] + float(s), prev[1] + float(c))
        return totals

    def __call__(self, split: str, params) -> dict:
        totals = self.sums(split, params)
        values = with_perplexity({name: s / max(c, 1.0) for name, (s, c) in totals.items()})
        values["scored"] = totals["loss"][1]  # examples (tokens for an LM) the loss counted
        return values


def check_splits(task, batch_size: int, shard: dict) -> None:
    """Reads the first batch of each evaluation split, so that a task reads (and checks) every
    split the run uses before the first step, not after training."""
    for split in ("validation", "test"):
        next(iter(task.eval_iterator(split, batch_size=batch_size, **shard)), None)
