"""grain pipelines: sharded, seeded, shuffled per epoch, batched with padding masks, resumable.

    ds = make_batches(load_split('listops', 'train', data_dir), batch_size=32, seed=0)
    it = iter(ds); batch = next(it); state = it.get_state()   # ... later: it.set_state(state)

Every batch is a dict of numpy arrays: `inputs` int32 (B, L) (retrieval: `inputs1`, `inputs2`),
`targets` int32 (B,), `mask` bool (B, L) True for real tokens (retrieval: `mask1`, `mask2`) and
`weights` float32 (B,), 1 for real examples and 0 for padding examples.
"""
import os

import grain
import numpy as np

from lra.data.specs import TASKS


class _Weighted:
    """A source whose examples carry `weights` = 1.0."""

    def __init__(self, source):
        self.source = source

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        example = dict(self.source[index])
        example["weights"] = 1.0
        return example


class _Padding:
    """`count` padding examples shaped like `template`: tokens 0, targets 0, weights 0.0."""

    def __init__(self, template, count):
        self.example = {name: (np.zeros_like(value) if isinstance(value, np.ndarray) else 0)
                        for name, value in template.items()}
        self.example["weights"] = 0.0
        self.count = count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if not 0 <= index < self.count:
            raise IndexError(index)
        return dict(self.example)


def _collate(padded):
    """Returns the batch_fn stacking examples into the batch dict described in the module doc."""

    def collate(examples):
        weights = np.array([e["weights"] for e in examples], np.float32)
        batch = {"targets": np.array([e["targets"] for e in examples], np.int32),
                 "weights": weights}
        for name in examples[0]:
            if name.startswith("inputs"):
                inputs = np.stack([e[name] for e in examples]).astype(np.int32)
                mask = inputs != 0 if padded else np.ones(inputs.shape, bool)
                batch[name] = inputs
                batch["mask" + name[len("inputs"):]] = mask & (weights[:, None] > 0)
        return batch

    return collate


def make_batches(source, *, batch_size, seed, shuffle=True, num_epochs=None, shard_index=0,
                 shard_count=1, drop_remainder=True, num_threads=None):
    """Returns a grain IterDataset of batches (see the module doc) from a random-access source.

    source: `len(source)` and `source[i]` -> {'inputs': int32[L], 'targets': int} (or inputs1 /
      inputs2); e.g. `load_split(...)`. Its `task` attribute (when present) decides the mask:
      pixel tasks mark every position real, the others mark `inputs != 0`.
    batch_size: per-host batch size B.
    seed: shuffling seed; each epoch is shuffled differently (seed combined with the epoch).
    num_epochs: None repeats forever; k stops after k passes. Batches never straddle epochs:
      with drop_remainder an epoch is (len // shard_count) // batch_size batches.
    shard_index, shard_count: this host reads only its indices, i::shard_count. With
      drop_remainder every host gets len // shard_count examples per epoch (the same number of
      steps); without it the data are first padded to a multiple of batch_size * shard_count with
      padding examples (weights 0), so every host yields the same number of batches and the last
      ones are padded up to batch_size (shuffle=True then mixes the padding examples in; for
      evaluation use shuffle=False, num_epochs=1, drop_remainder=False).
    num_threads: grain reader threads (default min(8, cores)); does not change the batches.
    The iterator (`iter(ds)`) supports `get_state()` / `set_state(state)`: after set_state it
    yields exactly the batches that followed the saved state.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index must be in 0..shard_count-1, got {shard_index} of "
                         f"{shard_count}")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be None or >= 1, got {num_epochs}")
    n = len(source)
    if n == 0:
        raise ValueError("make_batches: the source is empty")
    spec = TASKS.get(getattr(source, "task", None))
    padded = spec.padded if spec is not None else True
    ds = grain.MapDataset.source(_Weighted(source))
    if drop_remainder:
        per_shard = n // shard_count
        if per_shard < batch_size:
            raise ValueError(f"make_batches: {n} examples over {shard_count} shard(s) give fewer "
                             f"than one batch of {batch_size} (drop_remainder=True)")
        ds = ds[:per_shard * shard_count]
    else:
        group = batch_size * shard_count
        extra = -n % group
        if extra:
            pad = grain.MapDataset.source(_Padding(source[0], extra))
            ds = grain.MapDataset.concatenate([ds, pad])
    ds = ds[shard_index::shard_count]
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=_collate(padded))
    if num_epochs != 1:
        ds = ds.repeat(num_epochs)  # reseeds the shuffle above for every epoch
    threads = num_threads if num_threads is not None else min(8, os.cpu_count() or 1)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=threads))
