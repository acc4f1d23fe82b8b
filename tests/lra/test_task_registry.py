"""The registry of LRA tasks (lra.data.specs): a task registered in one place flows through
load_split, make_batches, the offline defaults of lra.tasks, `python -m lra.generate`, the configs
and lra.report; the mask is the spec's; the TSV readers check the cache before counting rows."""
import os
import pickle

import ml_collections
import numpy as np
import pytest

from lra import configs, report
from lra.data import TASKS, cache, files, listops, load_split, make_batches, register_task
from lra.data import retrieval
from lra.data.specs import Generator, Option, TaskSpec
from lra.generate import listops as gen_listops, standins
from lra.generate.__main__ import main as generate_main
from lra.tasks import LRATask, resolve_data_dir
from spade_jax.runtime.errors import ConfigError

PAD = 9  # the toy task pads with 9, so token 0 is a real token (the old rule said padding)


def toy_write(out, num, seed, *, length):
    """Writes out/toy/<split>.tsv: `num` rows per split of up to `length` tokens 0..8 and a
    label (the first token's parity)."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(out, "toy"))
    for split in ("train", "validation", "test"):
        with open(os.path.join(out, "toy", f"{split}.tsv"), "w") as f:
            for _ in range(num):
                tokens = rng.integers(0, PAD, rng.integers(1, length + 1))
                f.write(" ".join(map(str, tokens)) + f"\t{tokens[0] % 2}\n")


def toy_load(data_dir, split, *, spec, cache_dir, max_length=8, rebuild=False):
    """Reads what toy_write wrote: {'inputs': int32[max_length], 'targets': 0/1}."""
    path = files.find_files(data_dir, "toy", [f"{split}.tsv"], task=spec.name,
                            how_to_get=files.generate_hint(spec.name))[0]

    def read_rows(path):
        with open(path) as f:
            for line in f:
                tokens, label = line.rstrip("\n").split("\t")
                yield np.array(tokens.split(), np.int64)[:max_length], int(label)

    return cache.build_or_load(
        spec=spec, split=split, options={"max_length": max_length}, source_paths=[path],
        cache_dir=cache_dir, fields={"inputs": (max_length, np.uint8)},
        num_examples=lambda: files.count_rows(path, read_rows),
        rows=lambda: (({"inputs": tokens}, label) for tokens, label in read_rows(path)),
        rebuild=rebuild)


TOY = TaskSpec("toy", vocab_size=10, num_classes=2, max_length=8, pad_id=PAD, title="Toy",
               reader=toy_load,
               generator=Generator(toy_write, "toy", 30, (Option("length", 6, "tokens at most",
                                                                 minimum=1),)))


@pytest.fixture
def toy():
    """The toy task, registered for one test (and removed afterwards)."""
    spec = register_task(TOY)
    yield spec
    del TASKS[spec.name]


def test_the_six_tasks_are_registered_first_in_the_report_order():
    """The LRA paper's six tasks come first (a task registered later is a column after them)."""
    assert list(TASKS)[:6] == ["listops", "text", "retrieval", "image", "pathfinder", "pathx"]
    assert report.TASK_ORDER == tuple(TASKS)
    assert [TASKS[t].title for t in list(TASKS)[:6]] == ["ListOps", "Text", "Retrieval",
                                                         "Image", "Pathfinder", "Path-X"]
    assert TASKS["listops"].reader_options == ["max_length"]
    assert TASKS["pathx"].reader_options == ["difficulty", "image_size", "num_threads"]
    with pytest.raises(ValueError, match="already registered"):
        register_task(TASKS["listops"])


def test_the_mask_is_the_spec_s():
    tokens = np.array([[3, 0, 0], [0, 5, 9]])
    np.testing.assert_array_equal(TASKS["listops"].mask(tokens), tokens != 0)
    assert TASKS["pathfinder"].mask(tokens).all() and TASKS["image"].mask(tokens).all()
    np.testing.assert_array_equal(TOY.mask(tokens), [[True] * 3, [True, True, False]])


def test_a_registered_task_flows_through_every_module(toy, tmp_path, monkeypatch, capsys):
    # python -m lra.generate: the task, its flag and its default size come from the spec
    out = tmp_path / "data"
    assert generate_main([f"--task={toy.name}", f"--out={out}", "--num=10", "--length=5"]) == 0
    assert "wrote 10 toy examples" in capsys.readouterr().out
    assert sorted(os.listdir(out / "toy")) == ["test.tsv", "train.tsv", "validation.tsv"]
    with pytest.raises(SystemExit):
        generate_main(["--task=toy", f"--out={tmp_path / 'other'}", "--length=0"])
    assert "--length must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        generate_main(["--task=toy", f"--out={tmp_path / 'other'}", "--difficulty=easy"])
    assert "--task=toy takes no --difficulty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        generate_main(["--help"])
    assert "toy: tokens at most (default: toy 6)" in " ".join(capsys.readouterr().out.split())

    # load_split: the reader and its options; the split carries the spec object
    source = load_split("toy", "train", str(out), max_length=4)
    assert source.spec is toy and len(source) == 10
    assert source[0]["inputs"].shape == (4,)
    assert pickle.loads(pickle.dumps(source)).spec == toy
    with pytest.raises(ConfigError, match=r"toy accepts \['max_length'\]"):
        load_split("toy", "train", str(out), image_size=32)

    # make_batches: the mask is the spec's (token 0 real, the pad id 9 not)
    batch = next(iter(make_batches(source, batch_size=10, seed=0, shuffle=False)))
    np.testing.assert_array_equal(batch["mask"], batch["inputs"] != PAD)
    assert (batch["inputs"][batch["mask"]] == 0).any()  # zeros are tokens here
    assert (~batch["mask"]).any()

    # lra.tasks: the quick variant's offline default comes from the spec's generator
    monkeypatch.setenv("SPADE_JAX_CACHE", str(tmp_path / "cache"))
    config = ml_collections.ConfigDict({"task": "toy", "data_dir": "", "variant": "quick",
                                        "generate": {"num": 6, "length": 3}})
    folder = resolve_data_dir(config)
    task = LRATask("toy", folder, {"max_length": 3})
    inputs, mask = task.model_inputs(next(task.train_iterator(batch_size=2, seed=0,
                                                              shard_index=0, shard_count=1)))
    assert inputs.shape == (2, 3) and mask.dtype == bool
    config.generate = {"num": 6, "width": 3}
    with pytest.raises(ConfigError, match=r"unknown generator option\(s\) \['width'\]"):
        resolve_data_dir(config)

    # the configs read the spec's sizes
    c = configs.build("toy", "smoke", paper={}, quick={}, smoke={})
    assert (c.model.vocab_size, c.model.num_classes, c.model.pad_id) == (10, 2, PAD)

    # lra.report: the task's column
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(
        '{"task": "toy", "model": "spade", "wall_time_s": 3.0, "test_accuracy_at_best": 0.75}')
    table = report.table([str(run)])
    titles = [TASKS[t].title for t in TASKS]  # the toy's column last, after any other task
    assert titles[:6] == ["ListOps", "Text", "Retrieval", "Image", "Pathfinder", "Path-X"]
    assert titles[-1] == "Toy"
    assert "| model | " + " | ".join(titles) + " | avg |" in table
    assert "| spade | " + " | ".join(["-"] * (len(titles) - 1)) + " | 75.00 | - |" in table


@pytest.mark.parametrize("task", ["listops", "retrieval"])
def test_tsv_readers_check_the_cache_before_reading_the_file(task, tmp_path, monkeypatch):
    if task == "listops":
        gen_listops.write(str(tmp_path), 60, 0, min_length=5, max_length=40)
        module, path = listops, tmp_path / "listops-1000" / "basic_test.tsv"
    else:
        standins.write_retrieval(str(tmp_path), 40, 0)
        module, path = retrieval, tmp_path / "tsv_data" / "new_aan_pairs.test.tsv"
    first = load_split(task, "test", str(tmp_path))

    def unread(path):
        raise AssertionError(f"{path} was parsed although its cache entry exists")
    with monkeypatch.context() as patch:
        patch.setattr(module, "read_rows", unread)
        again = load_split(task, "test", str(tmp_path))
    assert again.path == first.path and len(again) == len(first)
    # a changed file (its size) gives a new key: the new row is read
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines + lines[-1:]))
    changed = load_split(task, "test", str(tmp_path))
    assert changed.path != first.path and len(changed) == len(first) + 1
