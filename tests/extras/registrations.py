"""A seventh LRA task and a sixth model family, registered as docs/architecture.md's recipes say:
`SPADE_JAX_TEST_EXTRAS=1 pytest` runs the whole suite with them (tests/conftest.py calls
`register()` in every process), which shows that registering a task or a family breaks no
unrelated test; tests/test_extensibility.py does that (long).

The task: 'parity', a reader of a TSV folder and its generator (lra.data.cache and the
lra.generate flags through its TaskSpec), as an LRA task is added. The family: 'window_then_s4'
(window attention, S4 in the last layer), one register() call.
"""
import os

import numpy as np

from lra.data import cache, files, register_task
from lra.data.specs import TASKS, Generator, Option, TaskSpec
from spade_jax.model import families

TASK, FAMILY = "parity", "window_then_s4"


def write(out, num, seed, *, digits):
    """out/parity/<split>.tsv: `num` rows per split of up to `digits` digits 1..8; the label is
    the parity of their sum."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(out, TASK))
    for split in ("train", "validation", "test"):
        with open(os.path.join(out, TASK, f"{split}.tsv"), "w") as f:
            for _ in range(num):
                row = rng.integers(1, 9, rng.integers(1, digits + 1))
                f.write(" ".join(map(str, row)) + f"\t{row.sum() % 2}\n")


def load(data_dir, split, *, spec, cache_dir, max_length=16, rebuild=False):
    """{'inputs': int32[max_length], 'targets': 0/1} of what `write` wrote."""
    path = files.find_files(data_dir, TASK, [f"{split}.tsv"], task=spec.name,
                            how_to_get=files.generate_hint(spec.name))[0]

    def read_rows(path):
        with open(path) as f:
            for line in f:
                digits, label = line.rstrip("\n").split("\t")
                yield np.array(digits.split(), np.int64), int(label)

    return cache.build_or_load(
        spec=spec, split=split, options={"max_length": max_length}, source_paths=[path],
        cache_dir=cache_dir, fields={"inputs": (max_length, np.uint8)},
        num_examples=lambda: files.count_rows(path, read_rows),
        rows=lambda: (({"inputs": d}, label) for d, label in read_rows(path)), rebuild=rebuild)


def register() -> None:
    """Registers the task and the family (once per process)."""
    if TASK not in TASKS:
        register_task(TaskSpec(
            TASK, vocab_size=10, num_classes=2, max_length=16, title="Parity",
            reader=f"{__name__}:load", generator=Generator(
                f"{__name__}:write", TASK, 30, (Option("digits", 12, "digits at most",
                                                        minimum=1),))))
    if FAMILY not in families.FAMILIES:
        families.register(families.Family(
            FAMILY, lambda cfg: ("window",) * (cfg.num_layers - 1) + ("s4",)))
