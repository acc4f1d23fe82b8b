"""grain pipeline: batch layout, masks, shuffling per epoch, sharding, eval padding, resume."""
import numpy as np
import pytest

from lra.data import TASKS, make_batches


class Toy:
    """n examples of length 6: inputs = [i+1] * (i % 5 + 1) then padding; target = i % 3."""

    spec = TASKS["listops"]

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        x = np.zeros(6, np.int32)
        x[:i % 5 + 1] = i + 1
        return {"inputs": x, "targets": i % 3}


def _ids(batch):
    """The example index of each row (0-based; -1 for padding rows)."""
    return [int(row[0]) - 1 for row in batch["inputs"]]


def _take(it, k):
    return [next(it) for _ in range(k)]


def test_batch_layout_and_mask():
    batch = next(iter(make_batches(Toy(20), batch_size=4, seed=0)))
    assert batch["inputs"].shape == (4, 6) and batch["inputs"].dtype == np.int32
    assert batch["targets"].dtype == np.int32 and batch["targets"].shape == (4,)
    assert batch["mask"].dtype == bool
    np.testing.assert_array_equal(batch["mask"], batch["inputs"] != 0)
    np.testing.assert_array_equal(batch["weights"], np.ones(4, np.float32))
    np.testing.assert_array_equal(batch["targets"], [i % 3 for i in _ids(batch)])


def test_pixel_tasks_mark_every_position_real():
    source = Toy(8)
    source.spec = TASKS["pathfinder"]
    batch = next(iter(make_batches(source, batch_size=4, seed=0)))
    assert batch["mask"].all()


def test_epochs_are_permutations_shuffled_differently_and_seeded():
    it = iter(make_batches(Toy(12), batch_size=4, seed=5))
    epochs = [sum((_ids(b) for b in _take(it, 3)), []) for _ in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(12))
    assert epochs[0] != epochs[1] != epochs[2]
    again = iter(make_batches(Toy(12), batch_size=4, seed=5))
    assert sum((_ids(b) for b in _take(again, 3)), []) == epochs[0]
    other = iter(make_batches(Toy(12), batch_size=4, seed=6))
    assert sum((_ids(b) for b in _take(other, 3)), []) != epochs[0]


def test_finite_epochs_stop():
    batches = list(make_batches(Toy(10), batch_size=4, seed=0, num_epochs=2))
    assert len(batches) == 5  # 20 rows in global order, straddling the epochs
    ids = sum((_ids(b) for b in batches), [])
    assert sorted(ids) == sorted(list(range(10)) * 2)


def test_shards_are_disjoint_and_cover():
    seen = []
    for k in range(3):
        batches = list(make_batches(Toy(30), batch_size=5, seed=0, num_epochs=1,
                                    shard_index=k, shard_count=3))
        assert len(batches) == 2
        seen += sum((_ids(b) for b in batches), [])
    assert sorted(seen) == list(range(30))


@pytest.mark.parametrize("hosts", [2, 4])
def test_global_batches_do_not_depend_on_the_number_of_hosts(hosts):
    """Host k's rows of global batch j are rows k*B ... of the one-host batch j (B = 8 / hosts),
    across epoch boundaries (Toy(13): batches straddle them), and every example is used exactly
    once per epoch."""
    one = iter(make_batches(Toy(13), batch_size=8, seed=3))
    split = [iter(make_batches(Toy(13), batch_size=8 // hosts, seed=3, shard_index=k,
                               shard_count=hosts)) for k in range(hosts)]
    rows = []
    for _ in range(13):  # 13 global batches of 8 = 8 epochs of 13
        whole = next(one)
        parts = [next(it) for it in split]
        for key in whole:
            np.testing.assert_array_equal(whole[key], np.concatenate([p[key] for p in parts]))
        rows += _ids(whole)
    for epoch in range(8):
        assert sorted(rows[epoch * 13:(epoch + 1) * 13]) == list(range(13))
    assert {it.get_state()["next_index"] for it in split} == {one.get_state()["next_index"]}


def test_eval_pads_last_batch_with_zero_weight():
    for shards in (1, 2):
        real = []
        counts = []
        for k in range(shards):
            batches = list(make_batches(Toy(11), batch_size=4, seed=0, shuffle=False,
                                        num_epochs=1, drop_remainder=False, shard_index=k,
                                        shard_count=shards))
            counts.append(len(batches))
            for b in batches:
                assert b["inputs"].shape == (4, 6)
                pad = b["weights"] == 0
                assert not b["inputs"][pad].any() and not b["targets"][pad].any()
                assert not b["mask"][pad].any()
                real += [i for i, w in zip(_ids(b), b["weights"]) if w == 1]
        assert len(set(counts)) == 1
        assert sorted(real) == list(range(11))


def test_resume_from_state_gives_same_batches():
    ds = make_batches(Toy(10), batch_size=3, seed=1)
    it = iter(ds)
    _take(it, 4)  # crosses an epoch boundary (3 batches per epoch)
    state = it.get_state()
    expected = _take(it, 5)
    resumed = iter(make_batches(Toy(10), batch_size=3, seed=1))
    resumed.set_state(state)
    for a, b in zip(expected, _take(resumed, 5)):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_bad_arguments():
    with pytest.raises(ValueError, match="shard_index"):
        make_batches(Toy(10), batch_size=2, seed=0, shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        make_batches(Toy(3), batch_size=2, seed=0, num_epochs=1, shard_count=2)


def test_the_tasks_batch_spec_is_the_pipelines_layout():
    """LRATask.batch_spec (what the engine builds the state and compiles the steps from, without
    data) gives the keys, shapes and dtypes the pipeline yields; spade_jax.train.job.check_batch
    names a field that differs."""
    from lra.tasks import LRATask
    from spade_jax.runtime.errors import DataError
    from spade_jax.train.job import check_batch
    task = LRATask("listops", "", {"max_length": 6})
    batch = next(iter(make_batches(Toy(8), batch_size=4, seed=0)))
    spec = task.batch_spec(4)
    assert {k: (s.shape, np.dtype(s.dtype)) for k, s in spec.items()} == \
        {k: (v.shape, v.dtype) for k, v in batch.items()}
    check_batch(task, batch, "the first training batch")
    with pytest.raises(DataError, match=r"'inputs' is int32\[4, 6\], but the config makes the "
                                        r"model expect int32\[4, 2000\]"):
        check_batch(LRATask("listops", ""), batch, "the first training batch")


def test_model_length_follows_the_data_options():
    """model.max_len follows data_options (max_length; image_size squared), also when a flag
    changes them; setting model.max_len changes only it."""
    import os
    from spade_jax.train import config_builder
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = config_builder.load(os.path.join(root, "configs/text.py"))
    assert text.model.max_len == 4096
    text.data_options.max_length = 1000
    assert text.model.max_len == 1000
    text.model.max_len = 7
    assert (text.model.max_len, text.data_options.max_length) == (7, 1000)
    pathx = config_builder.load(os.path.join(root, "configs/pathx.py"))
    pathx.data_options.image_size = 64
    assert pathx.model.max_len == 4096
