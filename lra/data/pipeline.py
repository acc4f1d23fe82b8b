"""grain pipelines: sharded, seeded, shuffled per epoch, batched with padding masks, resumable.

    ds = make_batches(load_split('listops', 'train', data_dir), batch_size=32, seed=0)
    it = iter(ds); batch = next(it); state = it.get_state()   # ... later: it.set_state(state)

Every batch is a dict of numpy arrays: `inputs` int32 (B, L) (retrieval: `inputs1`, `inputs2`),
`targets` int32 (B,), `mask` bool (B, L) True for real tokens (retrieval: `mask1`, `mask2`) and
`weights` float32 (B,), 1 for real examples and 0 for padding examples.
"""
import os

import numpy as np


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


def _collate(spec):
    """Returns the batch_fn stacking examples into the batch dict described in the module doc
    (masks: spec.mask of the inputs, False in padding examples)."""

    def collate(examples):
        weights = np.array([e["weights"] for e in examples], np.float32)
        batch = {"targets": np.array([e["targets"] for e in examples], np.int32),
                 "weights": weights}
        for name in examples[0]:
            if name.startswith("inputs"):
                inputs = np.stack([e[name] for e in examples]).astype(np.int32)
                batch[name] = inputs
                batch["mask" + name[len("inputs"):]] = spec.mask(inputs) & (weights[:, None] > 0)
        return batch

    return collate


class _HostRows:
    """Host `index` of `count`'s rows of a global example order: global batch k holds rows
    k*B*count ... (k+1)*B*count - 1 of `rows`, and this host takes its index-th B of them."""

    def __init__(self, rows, batch_size, index, count):
        self.rows, self.batch_size, self.index, self.count = rows, batch_size, index, count

    def __len__(self):
        return len(self.rows) // self.count

    def __getitem__(self, j):
        k, r = divmod(j, self.batch_size)
        return self.rows[(k * self.count + self.index) * self.batch_size + r]


def make_batches(source, *, batch_size, seed, shuffle=True, num_epochs=None, shard_index=0,
                 shard_count=1, drop_remainder=True, num_threads=None):
    """Returns a grain IterDataset of batches (see the module doc) from a random-access source.

    The examples form one global order, the same whatever the number of hosts: epoch after
    epoch, each a permutation of the source (seeded, different per epoch; in source order
    without shuffle). Global batch k is rows k*G ... (k+1)*G - 1 of that order (G = batch_size *
    shard_count), and host shard_index takes its shard_index-th batch_size rows of it. So every
    example is used exactly once per epoch across hosts (batches may straddle two epochs), a run
    on 2 hosts x 4 devices sees the same global batches as one on 1 host x 8 devices, and the
    iterator's state (the number of batches taken) means the same on any number of hosts.

    source: `len(source)` and `source[i]` -> {'inputs': int32[L], 'targets': int} (or inputs1 /
      inputs2), with a `spec` attribute (the TaskSpec whose `mask` decides the masks); e.g.
      `load_split(...)`.
    batch_size: per-host batch size B.
    seed: shuffling seed.
    num_epochs: None repeats forever; k stops after k passes over the source. Then
      drop_remainder=True drops the last global batch if it is incomplete; drop_remainder=False
      pads it with padding examples (weights 0), so every host yields the same number of
      batches (for evaluation: shuffle=False, num_epochs=1, drop_remainder=False).
    shard_index, shard_count: this host and the number of hosts.
    num_threads: grain reader threads (default min(8, cores)); does not change the batches.
    The iterator (`iter(ds)`) supports `get_state()` / `set_state(state)`: after set_state it
    yields exactly the batches that followed the saved state.
    """
    import grain  # here: lra.data's other users (lra.report, lra.generate) start without it

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
    spec = getattr(source, "spec", None)
    if spec is None:
        raise ValueError("make_batches: the source has no `spec` attribute (the TaskSpec whose "
                         "mask() marks its real tokens); load_split's sources have one")
    rows = grain.MapDataset.source(_Weighted(source))
    if shuffle:
        rows = rows.shuffle(seed=seed)  # index i >= n: epoch i // n, its own permutation
    rows = rows.repeat(num_epochs)
    group = batch_size * shard_count
    if num_epochs is not None:
        total = n * num_epochs
        if drop_remainder:
            if total < group:
                raise ValueError(f"make_batches: {total} examples give fewer than one global "
                                 f"batch of {group} ({shard_count} host(s) x {batch_size}; "
                                 f"drop_remainder=True)")
            rows = rows[:total - total % group]
        elif total % group:
            pad = grain.MapDataset.source(_Padding(source[0], group - total % group))
            rows = grain.MapDataset.concatenate([rows, pad])
    ds = grain.MapDataset.source(_HostRows(rows, batch_size, shard_index, shard_count))
    ds = ds.batch(batch_size, drop_remainder=True, batch_fn=_collate(spec))
    threads = num_threads if num_threads is not None else min(8, os.cpu_count() or 1)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=threads))
