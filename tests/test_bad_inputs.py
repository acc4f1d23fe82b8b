"""Bad input at every entry point: one short message naming the file / field, a non-zero exit
status, no traceback, and nothing the user has changed (issue 17's table).

Each case runs an entry point's command line in this process (`run(argv)` / `main(argv)`),
on its own copy of tiny generated data, and checks the data folder and the workdir byte for
byte afterwards (the token cache `.lra_cache` aside: it is ours). A handful of real subprocesses
check the same end to end. The counts of the issue's closing note: every case that passes is
'tried' and 'clear'; 'silent' (exit 0) and 'lost' (a changed file) fail the test.
"""
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Callable

import numpy as np
import pytest

import lm.corpus
import lm.evaluate
import lm.generate
import lm.main
import lra.main
import lra.report
from benchmarks import attention as bench_attention, mfu as bench_mfu, scaling as bench_scaling
from lra.generate import __main__ as lra_generate, listops as gen_listops, pathfinder as gen_pathfinder
from lra.generate import standins
from benchmarks import reproduce as bench_reproduce
from spade_jax import aot
from spade_jax.runtime import local_cluster, lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTOPS = os.path.join(ROOT, "configs", "listops.py")
PATHFINDER = os.path.join(ROOT, "configs", "pathfinder.py")
RETRIEVAL = os.path.join(ROOT, "configs", "retrieval.py")
WIKITEXT = os.path.join(ROOT, "configs", "wikitext103.py")
LM_FIXTURE = os.path.join(ROOT, "tests", "lm", "fixture")

ENTRY_POINTS = {
    "lra.main": lra.main.run, "lm.main": lm.main.run, "lm.evaluate": lm.evaluate.run,
    "lm.generate": lm.generate.run,
    "lra.generate": lambda argv: lra_generate.main(argv[1:]),
    "lm.corpus": lambda argv: lm.corpus.main(argv[1:]),
    "lra.report": lambda argv: lra.report.main(argv[1:]),
    "benchmarks.mfu": lambda argv: bench_mfu.main(argv[1:]),
    "benchmarks.scaling": lambda argv: bench_scaling.main(argv[1:]),
    "benchmarks.attention": lambda argv: bench_attention.main(argv[1:]),
    "benchmarks.reproduce": lambda argv: bench_reproduce.main(argv[1:]),
    "spade_jax.runtime.local_cluster": lambda argv: local_cluster.main(argv[1:]),
    "spade_jax.aot": aot.run,
}


def digest(folder) -> dict:
    """{relative path: sha256} of every file under `folder` (.lra_cache left out)."""
    out = {}
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".lra_cache"]
        for name in files:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def run_cli(entry, argv, capsys):
    """(exit status, stdout + stderr) of `python -m entry argv...`, run in this process."""
    try:
        status = ENTRY_POINTS[entry]([entry] + list(argv))
    except SystemExit as e:  # argparse
        status = e.code
    captured = capsys.readouterr()
    return status, captured.out + captured.err


# --- the data every case starts from (written once, copied per case) --------------------------

@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    gen_listops.write(str(root / "listops"), 60, 0, min_length=5, max_length=40)
    gen_pathfinder.write(str(root / "pathfinder"), 24, 0, image_size=32,
                         difficulty="curv_baseline", per_folder=12, processes=1)
    standins.write_retrieval(str(root / "retrieval"), 40, 0)
    shutil.copytree(LM_FIXTURE, root / "wikitext")
    return root


@pytest.fixture(scope="module")
def lm_run(pristine, tmp_path_factory):
    """An lm.main workdir on the LM fixture: config.json and a checkpoint of the smoke model's
    initial state (saved as the loop saves it; nothing trained, nothing to compile but init)."""
    import importlib.util

    from lm.task import LMTask, load_corpus, set_vocab_size
    from spade_jax.model import models
    from spade_jax.train import sharding
    from spade_jax.model.config import ModelConfig
    from spade_jax.train import checkpoint, optim, state as state_lib, workdir as workdir_lib
    spec = importlib.util.spec_from_file_location("_wikitext", WIKITEXT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    config.data_dir = str(pristine / "wikitext")
    config.data.cache_dir = str(tmp_path_factory.mktemp("lm-cache"))
    corpus = load_corpus(config)
    set_vocab_size(config, corpus)
    workdir = str(tmp_path_factory.mktemp("lm-run") / "run")
    workdir_lib.record(workdir, config)
    mesh = sharding.make_mesh(config.mesh)
    tx, _ = optim.make_optimizer(config.optimizer, config.num_train_steps)
    task = LMTask(corpus, config.seq_len, config.eval_context)
    batch = next(task.train_iterator(batch_size=1, seed=0, shard_index=0, shard_count=1))
    state, _ = state_lib.create_sharded_state(
        models.build_model(ModelConfig.from_config(config.model)), tx,
        task.model_inputs(batch), 0, mesh,
        sharding.rules_from_config(config.logical_axis_rules))
    ckpts = checkpoint.Checkpoints(workdir, 1, False)
    ckpts.save(ckpts.latest, 1, state, {"iterator": {"batches": 1}, "best_score": 0.0})
    ckpts.wait()
    ckpts.close()
    return workdir


class Env:
    """A case's folders: `data` (a copy of one pristine data set), `work` (the workdir, absent
    until a case makes it), `tmp`; `argv` fills in {data}, {work}, {tmp}, {config:...}."""

    def __init__(self, tmp_path, pristine):
        self.tmp, self.pristine = tmp_path, pristine
        self.data, self.work = tmp_path / "data", tmp_path / "work"

    def copy(self, name):
        shutil.copytree(self.pristine / name, self.data)
        return self.data

    def lines(self, relative):
        path = self.data / relative
        return path, path.read_bytes().split(b"\n")

    def edit_line(self, relative, number, text: bytes):
        path, lines = self.lines(relative)
        lines[number - 1] = text
        path.write_bytes(b"\n".join(lines))

    def workdir_config(self, config_file, arg, **changes):
        """WORKDIR/config.json as lra.main / lm.main write it, with dotted `changes`."""
        import importlib.util
        spec = importlib.util.spec_from_file_location("_config", config_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = module.get_config(arg)
        values = json.loads(config.to_json_best_effort())
        for key, value in changes.items():
            target = values
            *parents, last = key.split(".")
            for name in parents:
                target = target[name]
            target[last] = value
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "config.json").write_text(json.dumps(values))

    def metadata_as_text(self, rows: Callable):
        """Rewrites Pathfinder's metadata/0.npy as the release's text format, rows edited by
        rows(list of field lists) -> list of field lists."""
        meta = self.data / "pathfinder32" / "curv_baseline" / "metadata" / "0.npy"
        fields = [list(map(str, row)) for row in np.load(meta)]
        meta.write_text("".join(" ".join(row) + "\n" for row in rows(fields)))


@dataclasses.dataclass
class Case:
    id: str
    entry: str
    argv: list
    expect: tuple  # substrings of the message: what is wrong and where
    setup: Callable = None  # setup(env)
    keep_workdir: bool = False  # the workdir exists before: it must stay byte for byte
    environ: dict = None  # environment variables set for the case


LRA_SMOKE = [f"--config={LISTOPS}:smoke", "--config.batch_size=8", "--workdir={work}"]
LRA_DATA = LRA_SMOKE + ["--config.data_dir={data}"]
PF_DATA = [f"--config={PATHFINDER}:smoke", "--config.batch_size=8", "--workdir={work}",
           "--config.data_dir={data}"]
RT_DATA = [f"--config={RETRIEVAL}:smoke", "--config.batch_size=8", "--workdir={work}",
           "--config.data_dir={data}"]
LM_DATA = [f"--config={WIKITEXT}:smoke", "--config.batch_size=8", "--config.eval_batch_size=8",
           "--workdir={work}",
           "--config.data_dir={data}"]
TSV = "listops-1000/basic_{}.tsv"
PF_META = "pathfinder32/curv_baseline/metadata/0.npy"


def _listops(env):
    env.copy("listops")


def _pf(env):
    env.copy("pathfinder")


def _row(number, text):
    return lambda env: (env.copy("listops"), env.edit_line(TSV.format("train"), number, text))


def _split_row(split, number, text):
    return lambda env: (env.copy("listops"), env.edit_line(TSV.format(split), number, text))


def _pf_rows(edit):
    return lambda env: (env.copy("pathfinder"), env.metadata_as_text(edit))


def _outside_png(env):
    env.copy("pathfinder")
    image = env.data / "pathfinder32" / "curv_baseline" / "imgs" / "0" / "sample_0.png"
    outside = env.tmp / "outside.png"
    shutil.copy(image, outside)
    root = env.data / "pathfinder32" / "curv_baseline"
    relative = os.path.relpath(outside, root)
    env.metadata_as_text(lambda rows: [[*os.path.split(relative), *rows[0][2:]]] + rows[1:])


def _lm(edit=None):
    def setup(env):
        env.copy("wikitext")
        if edit:
            edit(env.data)
    return setup


def _lra_workdir(env):
    env.workdir_config(LISTOPS, "smoke")


def _lm_workdir(env):
    env.copy("wikitext")
    env.workdir_config(WIKITEXT, "smoke", data_dir=str(env.data))


def _lm_trained(env):
    shutil.copytree(env.lm_run, env.work)


def _held_lock(env):
    """The workdir (an LRA run's config) locked by a live holder: this test process."""
    _listops(env)
    env.workdir_config(LISTOPS, "smoke", batch_size=8, data_dir=str(env.data))
    held = lock.WorkdirLock(env.work)
    held.acquire()
    env.release = held.release


def _results(value):
    def setup(env):
        env.work.mkdir()
        (env.work / "results.json").write_text(value)
    return setup


CASES = [
    # lra.main: flags and config fields (issue item 9)
    Case("unknown-field", "lra.main", LRA_SMOKE + ["--config.nonexistent=1"],
         ("config.nonexistent", "no field 'nonexistent'", "closest")),
    Case("unknown-model-field", "lra.main", LRA_SMOKE + ["--config.model.num_layer=2"],
         ("model.num_layer", "num_layers")),
    Case("unknown-optimizer-field", "lra.main", LRA_SMOKE + ["--config.optimizer.learning_rte=1"],
         ("learning_rte", "learning_rate")),
    Case("unknown-data-option", "lra.main", LRA_SMOKE + ["--config.data_options.max_lenght=9"],
         ("max_lenght", "max_length")),
    Case("field-not-a-number", "lra.main", LRA_SMOKE + ["--config.batch_size=abc"],
         ("config.batch_size", "abc")),
    Case("no-config-file", "lra.main", ["--config=configs/nope.py", "--workdir={work}"],
         ("configs/nope.py", "no config file")),
    Case("bad-config-argument", "lra.main", [f"--config={LISTOPS}:bogus", "--workdir={work}"],
         ("bogus", "not understood")),
    Case("unknown-family", "lra.main", [f"--config={LISTOPS}:model=mega", "--workdir={work}"],
         ("mega", "family")),
    Case("no-workdir", "lra.main", [f"--config={LISTOPS}:smoke"], ("--workdir is required",)),
    Case("unknown-flag", "lra.main", LRA_SMOKE + ["--bogus_flag=1"], ("bogus_flag",)),
    Case("stray-argument", "lra.main", LRA_SMOKE + ["extra"], ("extra", "unexpected")),
    Case("heads-do-not-divide", "lra.main", LRA_SMOKE + ["--config.model.num_heads=3"],
         ("model.d_model", "model.num_heads")),
    Case("unknown-family-field-value", "lra.main", LRA_SMOKE + ["--config.model.family=mega"],
         ("model.family", "mega")),
    Case("dropout-out-of-range", "lra.main", LRA_SMOKE + ["--config.model.dropout=1.5"],
         ("model.dropout",)),
    Case("batch-not-divisible", "lra.main", LRA_SMOKE + ["--config.batch_size=6"],
         ("config.batch_size (6)",)),
    Case("grad-accum-zero", "lra.main", LRA_SMOKE + ["--config.grad_accum_steps=0"],
         ("config.grad_accum_steps",)),
    Case("no-steps", "lra.main", LRA_SMOKE + ["--config.num_train_steps=0"],
         ("config.num_train_steps",)),
    Case("negative-eval-every", "lra.main", LRA_SMOKE + ["--config.eval_every=-1"],
         ("config.eval_every",)),
    Case("unknown-optimizer", "lra.main", LRA_SMOKE + ["--config.optimizer.name=lion"],
         ("config.optimizer.name", "lion")),
    Case("unknown-schedule", "lra.main", LRA_SMOKE + ["--config.optimizer.schedule=step"],
         ("config.optimizer.schedule",)),
    Case("mesh-does-not-fit", "lra.main", LRA_SMOKE + ["--config.mesh.data=3"],
         ("config.mesh",)),
    Case("skipped-fraction", "lra.main", LRA_SMOKE + ["--config.max_skipped_fraction=2"],
         ("config.max_skipped_fraction",)),
    Case("no-checkpoints-kept", "lra.main", LRA_SMOKE + ["--config.keep_checkpoints=0"],
         ("config.keep_checkpoints",)),
    Case("eval-batch-not-divisible", "lra.main", LRA_SMOKE + ["--config.eval_batch_size=3"],
         ("config.eval_batch_size (3)",)),
    Case("negative-seed", "lra.main", LRA_SMOKE + ["--config.seed=-1"], ("config.seed",)),
    Case("profile-steps", "lra.main", LRA_SMOKE + ["--config.profile_steps=(5,)"],
         ("config.profile_steps",)),
    Case("s4-scan-with-dplr", "lra.main", LRA_SMOKE + ["--config.model.s4.mode=scan"],
         ("model.s4.kernel='dplr'",)),
    Case("s4-step-sizes", "lra.main", LRA_SMOKE + ["--config.model.s4.dt_min=0.5"],
         ("dt_min=0.5",)),
    Case("data-longer-than-model", "lra.main", LRA_DATA + ["--config.model.max_len=10"],
         ("exceeds model.max_len 10",), _listops),
    Case("full-config-without-data", "lra.main", [f"--config={LISTOPS}", "--workdir={work}"],
         ("config.data_dir is not set", "listops-1000")),
    Case("data-dir-missing", "lra.main", LRA_SMOKE + ["--config.data_dir={tmp}/nowhere"],
         ("nowhere", "does not exist")),
    # lra.main: data files (items 1, 7, 8, 10)
    Case("listops-three-fields", "lra.main", LRA_DATA, ("basic_train.tsv, line 3", "3"),
         _row(3, b"( [MAX 1 2 ] )\t4\t5")),
    Case("listops-target-text", "lra.main", LRA_DATA, ("basic_train.tsv, line 2", "Target"),
         _row(2, b"( [MAX 1 2 ] )\tfour")),
    Case("listops-bad-validation-row", "lra.main", LRA_DATA, ("basic_val.tsv, line 2", "0..9"),
         _split_row("val", 2, b"( [MAX 1 2 ] )\t12")),
    Case("listops-bad-test-row", "lra.main", LRA_DATA, ("basic_test.tsv, line 2", "found 1"),
         _split_row("test", 2, b"( [MAX 1 2 ] )")),
    Case("listops-not-utf8", "lra.main", LRA_DATA,
         ("basic_test.tsv, line 2, byte offset", "0xff", "UTF-8"),
         _split_row("test", 2, b"( [MAX 1 \xff ] )\t2")),
    Case("listops-missing-split", "lra.main", LRA_DATA, ("basic_val.tsv", "missing"),
         lambda env: (env.copy("listops"), os.remove(env.data / TSV.format("val")))),
    Case("listops-empty-train", "lra.main", LRA_DATA, ("basic_train.tsv", "no examples"),
         lambda env: (env.copy("listops"), (env.data / TSV.format("train")).write_text(""))),
    Case("read-only-data-dir", "lra.main", LRA_DATA,
         ("cannot write the token cache", "--config.data_cache_dir"),
         lambda env: (env.copy("listops"), (env.data / ".lra_cache").write_text("a file"))),
    Case("unwritable-cache-dir", "lra.main", LRA_DATA + ["--config.data_cache_dir={tmp}/f/c"],
         ("cannot write the token cache", "data_cache_dir"),
         lambda env: (env.copy("listops"), (env.tmp / "f").write_text(""))),
    Case("pathfinder-path-escapes", "lra.main", PF_DATA,
         ("0.npy, line 1", "leads outside", "outside.png"), _outside_png),
    Case("pathfinder-absolute-path", "lra.main", PF_DATA,
         ("0.npy, line 2", "leads outside", "/etc/passwd"),
         _pf_rows(lambda rows: rows[:1] + [["/etc", "passwd", *rows[1][2:]]] + rows[2:])),
    Case("pathfinder-label", "lra.main", PF_DATA, ("0.npy, line 3", "label"),
         _pf_rows(lambda rows: rows[:2] + [rows[2][:3] + ["2"] + rows[2][4:]] + rows[3:])),
    Case("pathfinder-short-row", "lra.main", PF_DATA, ("0.npy, line 1", "at least 4 fields"),
         _pf_rows(lambda rows: [rows[0][:2]] + rows[1:])),
    Case("pathfinder-missing-image", "lra.main", PF_DATA, ("0.npy, line 1", "does not exist"),
         _pf_rows(lambda rows: [[rows[0][0], "nope.png", *rows[0][2:]]] + rows[1:])),
    Case("pathfinder-not-a-png", "lra.main", PF_DATA, ("sample_0.png", "cannot decode"),
         lambda env: (env.copy("pathfinder"), (env.data / "pathfinder32" / "curv_baseline" /
                                                "imgs" / "0" / "sample_0.png").write_text("x"))),
    Case("pathfinder-metadata-not-utf8", "lra.main", PF_DATA, ("0.npy, line 1, byte offset",),
         lambda env: (env.copy("pathfinder"), (env.data / PF_META).write_bytes(b"imgs/0 \xe9\n"))),
    Case("retrieval-label", "lra.main", RT_DATA, ("new_aan_pairs.train.tsv, line 1", "label"),
         lambda env: (env.copy("retrieval"), env.edit_line(
             "tsv_data/new_aan_pairs.train.tsv", 1, b"x\ta\tb\tc\td"))),
    Case("retrieval-four-fields", "lra.main", RT_DATA,
         ("new_aan_pairs.eval.tsv, line 2", "expected 5"),
         lambda env: (env.copy("retrieval"), env.edit_line(
             "tsv_data/new_aan_pairs.eval.tsv", 2, b"1\ta\tb\tc"))),
    # lra.main: the workdir (items 5, 6, 13)
    Case("workdir-of-another-model", "lra.main", LRA_DATA, ("another model config", "d_ff"),
         lambda env: (_listops(env), env.workdir_config(LISTOPS, "smoke", **{"model.d_ff": 64})),
         keep_workdir=True),
    Case("workdir-config-garbled", "lra.main", LRA_DATA,
         ("config.json is not valid JSON", "line 1"),
         lambda env: (_listops(env), env.work.mkdir(),
                      (env.work / "config.json").write_text('{"model": {"d_')), keep_workdir=True),
    Case("workdir-config-a-list", "lra.main", LRA_DATA, ("config.json", "JSON list"),
         lambda env: (_listops(env), env.work.mkdir(),
                      (env.work / "config.json").write_text("[1, 2]")), keep_workdir=True),
    Case("workdir-in-use", "lra.main", LRA_DATA,
         ("in use by another run", f"process {os.getpid()}"), _held_lock, keep_workdir=True),
    Case("workdir-is-a-file", "lra.main", LRA_DATA, ("--workdir", "cannot be made a folder"),
         lambda env: (_listops(env), env.work.write_text("x")), keep_workdir=True),
    # lm.main
    Case("lm-data-dir-missing", "lm.main", LM_DATA, ("does not exist",),
         lambda env: None),
    Case("lm-missing-split", "lm.main", LM_DATA, ("lacks wiki.test.tokens",),
         _lm(lambda d: os.remove(d / "wiki.test.tokens"))),
    Case("lm-unknown-word", "lm.main", LM_DATA,
         ("wiki.valid.tokens line 2", "windmillz", "config.data.unknown"),
         _lm(lambda d: (d / "wiki.valid.tokens").write_text(" = A = \n the windmillz \n"))),
    Case("lm-not-utf8", "lm.main", LM_DATA, ("wiki.train.tokens, line 3, byte offset", "0xe9"),
         _lm(lambda d: (d / "wiki.train.tokens").write_bytes(
             b"\n".join((d / "wiki.train.tokens").read_bytes().split(b"\n")[:2] +
                        [b" caf\xe9 "])))),
    Case("lm-empty-split", "lm.main", LM_DATA, ("wiki.valid.tokens is empty",),
         _lm(lambda d: (d / "wiki.valid.tokens").write_text(""))),
    Case("lm-tokenizer", "lm.main", LM_DATA + ["--config.data.tokenizer=bpe"],
         ("config.data.tokenizer", "bpe"), _lm()),
    Case("lm-unknown-mode", "lm.main", LM_DATA + ["--config.data.unknown=maybe"],
         ("config.data.unknown", "maybe"), _lm()),
    Case("lm-eval-context", "lm.main", LM_DATA + ["--config.eval_context=100000"],
         ("config.eval_context",), _lm()),
    Case("lm-vocab-size", "lm.main", LM_DATA + ["--config.model.vocab_size=7"],
         ("config.model.vocab_size is 7",), _lm()),
    Case("lm-seq-len-too-long", "lm.main",
         LM_DATA + ["--config.seq_len=100000", "--config.eval_context=8"],
         ("config.seq_len",), _lm()),
    Case("lm-unknown-field", "lm.main", LM_DATA + ["--config.data.suffixx=raw"],
         ("config.data.suffixx", "suffix"), _lm()),
    Case("lm-unknown-family", "lm.main", [f"--config={WIKITEXT}:model=mega", "--workdir={work}"],
         ("mega",)),
    Case("lm-unwritable-cache", "lm.main", LM_DATA + ["--config.data.cache_dir={tmp}/f/c"],
         ("cannot write the token cache", "config.data.cache_dir"),
         lambda env: (env.copy("wikitext"), (env.tmp / "f").write_text(""))),
    # lm.evaluate (item 12)
    Case("evaluate-no-workdir", "lm.evaluate", [], ("--workdir is required",)),
    Case("evaluate-workdir-missing", "lm.evaluate", ["--workdir={work}"],
         ("does not exist", "lm.main")),
    Case("evaluate-lra-workdir", "lm.evaluate", ["--workdir={work}"],
         ("'listops'", "not of lm.main"), _lra_workdir, keep_workdir=True),
    Case("evaluate-batch-size", "lm.evaluate", ["--workdir={work}", "--batch_size=-1"],
         ("--batch_size", "-1"), _lm_workdir, keep_workdir=True),
    Case("evaluate-context", "lm.evaluate", ["--workdir={work}", "--context=-5"],
         ("--context", "-5"), _lm_workdir, keep_workdir=True),
    Case("evaluate-split", "lm.evaluate", ["--workdir={work}", "--split=train"],
         ("--split", "train"), _lm_workdir, keep_workdir=True),
    Case("evaluate-config-garbled", "lm.evaluate", ["--workdir={work}"],
         ("config.json is not valid JSON",),
         lambda env: (env.work.mkdir(), (env.work / "config.json").write_text("{"))
         , keep_workdir=True),
    Case("evaluate-no-checkpoint", "lm.evaluate", ["--workdir={work}"], ("no checkpoint",),
         _lm_workdir, keep_workdir=True),
    Case("evaluate-context-too-long", "lm.evaluate", ["--workdir={work}", "--context=32"],
         ("--context (32)", "seq_len (32)"), _lm_trained, keep_workdir=True),
    # lm.generate (item 12)
    Case("generate-negative-tokens", "lm.generate", ["--workdir={work}", "--max_new_tokens=-5"],
         ("--max_new_tokens must be >= 1", "-5"), _lm_workdir, keep_workdir=True),
    Case("generate-top-k", "lm.generate",
         ["--workdir={work}", "--top_k=-1", "--temperature=1"], ("--top_k",), _lm_workdir,
         keep_workdir=True),
    Case("generate-temperature", "lm.generate", ["--workdir={work}", "--temperature=-1"],
         ("--temperature",), _lm_workdir, keep_workdir=True),
    Case("generate-top-p-zero", "lm.generate", ["--workdir={work}", "--top_p=0"],
         ("--top_p", "(0, 1]"), _lm_workdir, keep_workdir=True),
    Case("generate-top-p-above-one", "lm.generate",
         ["--workdir={work}", "--top_p=1.5", "--temperature=1"], ("--top_p",), _lm_workdir,
         keep_workdir=True),
    Case("generate-top-k-greedy", "lm.generate", ["--workdir={work}", "--top_k=5"],
         ("--temperature > 0",), _lm_workdir, keep_workdir=True),
    Case("generate-max-len", "lm.generate", ["--workdir={work}", "--max_len=-1"],
         ("--max_len",), _lm_workdir, keep_workdir=True),
    Case("generate-unknown-word", "lm.generate", ["--workdir={work}", "--prompt=The zzzqqq"],
         ("--prompt", "zzzqqq", "vocabulary"), _lm_trained, keep_workdir=True),
    Case("generate-lra-workdir", "lm.generate", ["--workdir={work}"], ("not of lm.main",),
         _lra_workdir, keep_workdir=True),
    # lra.generate (item 2)
    Case("generate-over-release", "lra.generate",
         ["--task=listops", "--out={data}", "--num=12", "--min_length=5", "--max_length=40"],
         ("listops-1000 exists", "--overwrite"), _listops),
    Case("generate-over-pathfinder", "lra.generate",
         ["--task=pathfinder", "--out={data}", "--num=10", "--difficulty=curv_baseline"],
         ("curv_baseline exists",), _pf),
    Case("generate-over-grid", "lra.generate",
         ["--task=pathfinder", "--out={data}/new", "--num=10", "--grid={data}/grid.png"],
         ("grid.png exists",), lambda env: (env.data.mkdir(), (env.data / "grid.png").write_text("png"))),
    Case("generate-unknown-task", "lra.generate", ["--task=imdb", "--out={data}"],
         ("invalid choice", "imdb")),
    Case("generate-too-few", "lra.generate", ["--task=listops", "--out={data}", "--num=2"],
         ("--num must be >= 3",)),
    Case("generate-out-is-file", "lra.generate", ["--task=text", "--out={data}", "--num=4"],
         ("is a file",), lambda env: env.data.write_text("x")),
    Case("generate-image-size", "lra.generate", ["--task=pathfinder", "--out={data}",
                                                 "--image_size=33"], ("invalid choice", "33")),
    Case("generate-lengths", "lra.generate",
         ["--task=listops", "--out={data}", "--min_length=50", "--max_length=40"],
         ("--min_length",)),
    # lm.corpus (item 2)
    Case("corpus-over-wikitext", "lm.corpus", ["--out={data}"],
         ("wiki.train.tokens exists", "--overwrite"), _lm()),
    Case("corpus-out-is-file", "lm.corpus", ["--out={data}"], ("is a file",),
         lambda env: env.data.write_text("x")),
    # lra.report (item 12)
    Case("report-truncated", "lra.report", ["{work}", "--out={tmp}/t.md"],
         ("results.json is not valid JSON",), _results('{"task": "listops", "mod'),
         keep_workdir=True),
    Case("report-no-results", "lra.report", ["{work}", "--out={tmp}/t.md"],
         ("holds no results.json",), lambda env: env.work.mkdir(), keep_workdir=True),
    Case("report-results-list", "lra.report", ["{work}", "--out={tmp}/t.md"], ("JSON list",),
         _results("[]"), keep_workdir=True),
    Case("report-lm-results", "lra.report", ["{work}", "--out={tmp}/t.md"],
         ("not an lra.main results file",),
         _results(json.dumps({"task": "wikitext103", "model": "spade", "wall_time_s": 1,
                              "test_accuracy_at_best": None})), keep_workdir=True),
    Case("report-over-another-file", "lra.report", ["{work}", "--out={work}/notes.md"],
         ("notes.md exists", "never overwritten"),
         lambda env: (_results(json.dumps({"task": "listops", "model": "spade", "wall_time_s": 1,
                                           "test_accuracy_at_best": 0.5}))(env),
                      (env.work / "notes.md").write_text("mine")), keep_workdir=True),
    Case("report-out-is-folder", "lra.report", ["{work}", "--out={tmp}"], ("is a folder",),
         _results(json.dumps({"task": "listops", "model": "spade", "wall_time_s": 1,
                              "test_accuracy_at_best": 0.5})), keep_workdir=True),
    # benchmarks
    Case("bench-out-not-empty", "benchmarks.mfu", ["--quick", "--out={work}"],
         ("not empty", "never overwritten"),
         lambda env: (env.work.mkdir(), (env.work / "mine.txt").write_text("x")),
         keep_workdir=True),
    Case("bench-unknown-field", "benchmarks.mfu", ["--quick", "--set", "model.dropoutt=0.0"],
         ("model.dropoutt", "dropout")),
    Case("bench-lengths", "benchmarks.scaling", ["--lengths=abc"], ("abc",)),
    Case("bench-repeats", "benchmarks.attention", ["--repeats=0"], ("--repeats",)),
]


def _config_file(text):
    """A user's own config file, {tmp}/mine.py."""
    return lambda env: (env.tmp / "mine.py").write_text(text)


def _workdir_with(name):
    """A workdir holding a file where the run keeps a folder."""
    return lambda env: (env.work.mkdir(), (env.work / name).write_text("mine"))


def _lm_changed(env):
    """A trained LM run whose corpus gained a word since (its vocabulary grew)."""
    _lm_trained(env)
    env.copy("wikitext")
    train = env.data / "wiki.train.tokens"
    train.write_text(train.read_text() + " zyzzyva \n")
    config = json.loads((env.work / "config.json").read_text())
    config["data_dir"] = str(env.data)
    (env.work / "config.json").write_text(json.dumps(config))


def _nan_results(field, value):
    record = {"task": "listops", "model": "spade", "wall_time_s": 1.0,
              "test_accuracy_at_best": 0.5}
    record[field] = value
    return _results(json.dumps(record))


CLUSTER = {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:12345", "JAX_NUM_PROCESSES": "2",
           "JAX_PROCESS_ID": "1"}
# A user's mistyped number for every checked engine and model field (issue 31: invented cases).
FIELD_VALUES = [
    ("optimizer.learning_rate", "nan", "must be a finite number"),
    ("optimizer.learning_rate", "inf", "must be a finite number"),
    ("optimizer.weight_decay", "nan", "must be a finite number"),
    ("optimizer.b1", "1.5", "config.optimizer.b1 must be in [0.0, 1.0]"),
    ("optimizer.b2", "-0.1", "config.optimizer.b2"),
    ("optimizer.eps", "-1e-8", "config.optimizer.eps must be >= 0"),
    ("optimizer.warmup_steps", "-5", "config.optimizer.warmup_steps must be >= 0"),
    ("optimizer.clip_norm", "-1", "config.optimizer.clip_norm must be >= 0"),
    ("optimizer.end_lr_factor", "-0.5", "config.optimizer.end_lr_factor"),
    ("optimizer.ssm_learning_rate", "-1e-3", "config.optimizer.ssm_learning_rate"),
    ("optimizer.momentum", "-0.9", "config.optimizer.momentum"),
    ("log_every", "-1", "config.log_every must be >= 0"),
    ("checkpoint_every", "-2", "config.checkpoint_every must be >= 0"),
    ("max_eval_batches", "-1", "config.max_eval_batches must be >= 0"),
    ("skip_window", "0", "config.skip_window must be >= 1"),
    ("max_wall_s", "-10", "config.max_wall_s must be >= 0"),
    ("max_wall_s", "nan", "config.max_wall_s must be a finite number"),
    ("peak_flops", "-1", "config.peak_flops must be >= 0"),
    ("seed", "4294967296", "config.seed must be in [0, 2**32)"),
    ("batch_size", "0", "config.batch_size must be >= 1"),
    ("grad_accum_steps", "3", "grad_accum_steps (3)"),
    ("mesh.dcn_data", "2", "config.mesh.dcn_data is 2"),
    ("mesh.fsdp", "-1", "at most one -1"),
    ("mesh.tensor", "0", "config.mesh sizes must be positive"),
    ("model.num_heads", "0", "model.num_heads must be a positive integer"),
    ("model.d_model", "0", "model.d_model must be a positive integer"),
    ("model.d_ff", "-4", "model.d_ff must be a positive integer"),
    ("model.num_layers", "0", "model.num_layers must be a positive integer"),
    ("model.chunk_size", "0", "model.chunk_size must be a positive integer"),
    ("model.radius", "-1", "model.radius must be an integer >= 0"),
    ("model.relpos_buckets", "0", "model.relpos_buckets must be a positive integer"),
    ("model.ffn_dropout", "1.0", "model.ffn_dropout must be in [0, 1)"),
    ("model.dropout", "nan", "model.dropout must be in [0, 1)"),
    ("model.pad_id", "40", "model.pad_id (40) must be a token id below vocab_size"),
    ("model.global_layers", "(7,)", "model.global_layers must name layers in [0, 2)"),
    ("model.dtype", "float8", "model.dtype"),
    ("model.remat", "some", "model.remat"),
    ("model.position", "rotary", "model.position"),
    ("model.norm", "rms", "model.norm"),
    ("model.pooling", "max", "model.pooling"),
    ("model.attention_impl", "fused", "model.attention_impl"),
    ("model.attention_impl", "flash", "model.attention_impl='flash' runs on a TPU only"),
    ("model.attention_impl", "splash", "cannot add the relative-position bias"),
    ("model.input_encoder", "conv", "model.input_encoder"),
    ("model.head", "regress", "model.head"),
    ("model.s4.d_state", "5", "model.s4.d_state must be even"),
    ("model.s4.kernel", "nplr", "model.s4.kernel must be one of"),
    ("model.s4.init", "lin", "model.s4.init='lin' (S4D-Lin) is a diagonal initialisation"),
    ("model.s4.dt_min", "0", "model.s4 needs 0 < dt_min <= dt_max"),
    ("model.s4.b_clip", "0", "model.s4.b_clip must be > 0"),
    ("model.s4.chunk_steps", "0", "model.s4.chunk_steps must be >= 1"),
    ("model.s4.discretization", "euler", "model.s4.discretization"),
    ("model.max_len", "100000000000", "model.max_len is 100,000,000,000, above the 2,097,152"),
    ("data_options.max_length", "0", "data_options.max_length must be a whole number"),
    ("data_options.max_length", "2000000000", "data_options.max_length must be a whole number"),
]
FIELD_CASES = [Case(f"field-{field}={value}", "lra.main", LRA_SMOKE + [f"--config.{field}={value}"],
                    (expected,)) for field, value, expected in FIELD_VALUES]

CASES += FIELD_CASES + [
    # issue 31: the model against the data
    Case("num-classes-below-labels", "lra.main", LRA_DATA + ["--config.model.num_classes=2"],
         ("labels up to", "model.num_classes is 2", "--config.model.num_classes=10"), _listops),
    Case("vocab-below-token-ids", "lra.main", LRA_DATA + ["--config.model.vocab_size=5"],
         ("token ids up to", "model.vocab_size is 5", "--config.model.vocab_size=17"),
         _listops),
    Case("lm-config-to-lra-main", "lra.main", [f"--config={WIKITEXT}:smoke", "--workdir={work}"],
         ("task 'wikitext103', not of an LRA task", "python -m lm.main")),
    Case("lra-config-to-lm-main", "lm.main", [f"--config={LISTOPS}:smoke", "--workdir={work}"],
         ("task 'listops', not a language-model config", "python -m lra.main")),
    # a user's own config file
    Case("config-syntax-error", "lra.main", ["--config={tmp}/mine.py", "--workdir={work}"],
         ("mine.py, line 1: SyntaxError",), _config_file("def get_config(arg=None:\n    pass\n")),
    Case("config-key-error", "lra.main", ["--config={tmp}/mine.py", "--workdir={work}"],
         ("mine.py, line 3: KeyError: 'x'",),
         _config_file("def get_config(arg=None):\n    d = {}\n    return d['x']\n")),
    Case("config-name-error", "lra.main", ["--config={tmp}/mine.py", "--workdir={work}"],
         ("mine.py, line 2: NameError",),
         _config_file("def get_config(arg=None):\n    return undefined_name\n")),
    Case("config-import-error", "lra.main", ["--config={tmp}/mine.py", "--workdir={work}"],
         ("mine.py, line 1: ModuleNotFoundError", "not_a_module_xyz"),
         _config_file("import not_a_module_xyz\n")),
    Case("config-without-get-config", "lra.main", ["--config={tmp}/mine.py", "--workdir={work}"],
         ("defines no get_config(arg) function",), _config_file("X = 1\n")),
    Case("config-returns-dict", "lra.main", ["--config={tmp}/mine.py", "--workdir={work}"],
         ("get_config returned a dict, not an ml_collections.ConfigDict",),
         _config_file("def get_config(arg=None):\n    return {'a': 1}\n")),
    Case("config-argument-for-lm", "lm.main", [f"--config={WIKITEXT}:s4_lr=some",
                                               "--workdir={work}"], ("s4_lr",)),
    # the workdir
    Case("workdir-empty", "lra.main", [f"--config={LISTOPS}:smoke", "--workdir="],
         ("--workdir is empty",)),
    Case("workdir-blank", "lm.main", [f"--config={WIKITEXT}:smoke", "--workdir=  "],
         ("--workdir is empty",)),
    Case("checkpoints-is-a-file", "lra.main", LRA_SMOKE, ("checkpoints is a file",),
         _workdir_with("checkpoints"), keep_workdir=True),
    Case("best-is-a-file", "lra.main", LRA_SMOKE, ("best is a file",), _workdir_with("best"),
         keep_workdir=True),
    Case("damaged-is-a-file", "lra.main", LRA_SMOKE, ("damaged is a file",),
         _workdir_with("damaged"), keep_workdir=True),
    # several processes
    Case("cluster-without-coordinator", "lra.main", LRA_SMOKE,
         ("JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=1 is set but JAX_COORDINATOR_ADDRESS is not",),
         environ={"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}),
    Case("cluster-coordinator-alone", "lra.main", LRA_SMOKE,
         ("JAX_COORDINATOR_ADDRESS=127.0.0.1:12345 is set but JAX_NUM_PROCESSES, "
          "JAX_PROCESS_ID is not",), environ={"JAX_COORDINATOR_ADDRESS": "127.0.0.1:12345"}),
    Case("cluster-index-too-large", "lra.main", LRA_SMOKE, ("JAX_PROCESS_ID (2) must be below",),
         environ={**CLUSTER, "JAX_PROCESS_ID": "2"}),
    Case("cluster-address-without-port", "lra.main", LRA_SMOKE, ("must be host:port",),
         environ={**CLUSTER, "JAX_COORDINATOR_ADDRESS": "localhost"}),
    Case("cluster-count-not-a-number", "lm.main", [f"--config={WIKITEXT}:smoke",
                                                   "--workdir={work}"],
         ("JAX_NUM_PROCESSES must be a whole number",),
         environ={**CLUSTER, "JAX_NUM_PROCESSES": "two"}),
    Case("startup-timeout", "lra.main", LRA_SMOKE,
         ("SPADE_JAX_STARTUP_TIMEOUT must be a positive number",),
         environ={**CLUSTER, "SPADE_JAX_STARTUP_TIMEOUT": "soon"}),
    Case("distributed-switch", "lm.main", [f"--config={WIKITEXT}:smoke", "--workdir={work}"],
         ("SPADE_JAX_DISTRIBUTED must be 0 or 1",), environ={"SPADE_JAX_DISTRIBUTED": "on"}),
    # data
    Case("listops-negative-target", "lra.main", LRA_DATA, ("basic_train.tsv, line 2", "-1"),
         _row(2, b"( [MAX 1 2 ] )	-1")),
    Case("listops-fractional-target", "lra.main", LRA_DATA, ("basic_train.tsv, line 4", "2.5"),
         _row(4, b"( [MAX 1 2 ] )	2.5")),
    Case("listops-missing-test", "lra.main", LRA_DATA, ("basic_test.tsv", "missing"),
         lambda env: (env.copy("listops"), os.remove(env.data / TSV.format("test")))),
    Case("data-dir-is-a-file", "lra.main", LRA_SMOKE + ["--config.data_dir={tmp}/file"],
         ("file", "does not exist"), lambda env: (env.tmp / "file").write_text("x")),
    Case("retrieval-label-two", "lra.main", RT_DATA, ("new_aan_pairs.train.tsv, line 1", "label"),
         lambda env: (env.copy("retrieval"), env.edit_line(
             "tsv_data/new_aan_pairs.train.tsv", 1, b"2	a	b	c	d"))),
    Case("retrieval-missing-test", "lra.main", RT_DATA, ("new_aan_pairs.test.tsv",),
         lambda env: (env.copy("retrieval"),
                      os.remove(env.data / "tsv_data" / "new_aan_pairs.test.tsv"))),
    Case("pathfinder-no-metadata", "lra.main", PF_DATA, ("metadata",),
         lambda env: (env.copy("pathfinder"), shutil.rmtree(
             env.data / "pathfinder32" / "curv_baseline" / "metadata"))),
    Case("pathfinder-other-size", "lra.main", PF_DATA + ["--config.data_options.image_size=64"],
         ("pathfinder64",), _pf),
    Case("pathfinder-unknown-difficulty", "lra.main",
         PF_DATA + ["--config.data_options.difficulty=hardest"], ("hardest",), _pf),
    Case("lm-one-word-corpus", "lm.main", LM_DATA, ("has 2 tokens, fewer than one training block",
                                                    "--config.seq_len"),
         _lm(lambda d: [(d / f"wiki.{s}.tokens").write_text(" hello \n")
                        for s in ("train", "valid", "test")])),
    Case("lm-raw-files-missing", "lm.main", LM_DATA + ["--config.data.suffix=raw"],
         ("lacks wiki.train.raw",), _lm()),
    Case("lm-cutoffs-decreasing", "lm.main", LM_DATA + ["--config.model.adaptive_cutoffs=(5,3)"],
         ("model.adaptive_cutoffs must be increasing",), _lm()),
    Case("lm-seq-len-zero", "lm.main", LM_DATA + ["--config.seq_len=0", "--config.eval_context=0"],
         ("seq_len",), _lm()),
    Case("lm-lr-nan", "lm.main", LM_DATA + ["--config.optimizer.learning_rate=nan"],
         ("config.optimizer.learning_rate must be a finite number",), _lm()),
    # lm.evaluate / lm.generate on a corpus changed since training
    Case("evaluate-corpus-changed", "lm.evaluate", ["--workdir={work}"],
         ("has changed since the run", "Restore the corpus"), _lm_changed, keep_workdir=True),
    Case("generate-corpus-changed", "lm.generate", ["--workdir={work}"],
         ("has changed since the run",), _lm_changed, keep_workdir=True),
    Case("evaluate-workdir-empty", "lm.evaluate", ["--workdir="], ("--workdir is empty",)),
    Case("generate-workdir-empty", "lm.generate", ["--workdir="], ("--workdir is empty",)),
    Case("evaluate-checkpoint", "lm.evaluate", ["--workdir={work}", "--checkpoint=middle"],
         ("--checkpoint", "middle"), _lm_workdir, keep_workdir=True),
    # lra.generate
    Case("generate-grid-for-listops", "lra.generate",
         ["--task=listops", "--out={data}", "--num=12", "--grid={tmp}/g.png"],
         ("--grid draws images", "nothing was written")),
    Case("generate-per-folder-zero", "lra.generate",
         ["--task=pathfinder", "--out={data}", "--num=5", "--per_folder=0"],
         ("--per_folder must be >= 1",)),
    Case("generate-processes-zero", "lra.generate",
         ["--task=pathfinder", "--out={data}", "--num=5", "--processes=0"],
         ("--processes must be >= 1",)),
    Case("generate-difficulty", "lra.generate",
         ["--task=pathfinder", "--out={data}", "--num=5", "--difficulty=hard"],
         ("invalid choice", "hard")),
    Case("generate-option-of-another-task", "lra.generate",
         ["--task=listops", "--out={data}", "--num=5", "--image_size=32"],
         ("--task=listops takes no --image_size",)),
    Case("generate-stats-images", "lra.generate", ["--stats", "{tmp}", "--stats_images=-1"],
         ("--stats_images must be >= 0",)),
    Case("generate-no-task", "lra.generate", ["--out={data}"], ("--task and --out",)),
    # lra.report
    Case("report-nan-accuracy", "lra.report", ["{work}", "--out={tmp}/t.md"],
         ("not finite", "NaN"), _nan_results("test_accuracy_at_best", float("nan")),
         keep_workdir=True),
    Case("report-infinite-wall-time", "lra.report", ["{work}", "--out={tmp}/t.md"],
         ("not finite", "inf"), _nan_results("wall_time_s", float("inf")), keep_workdir=True),
    Case("report-run-missing", "lra.report", ["{tmp}/nowhere", "--out={tmp}/t.md"],
         ("does not exist",)),
    # benchmarks
    Case("reproduce-budget", "benchmarks.reproduce", ["--budget_s=-5"],
         ("--budget_s must be a positive number",)),
    Case("reproduce-unknown-part", "benchmarks.reproduce", ["--parts=speed"], ("speed",)),
    Case("scaling-unknown-family", "benchmarks.scaling", ["--families=mega"], ("mega",)),
    Case("mfu-batch-zero", "benchmarks.mfu", ["--quick", "--batch=0"], ("--batch",)),
    # spade_jax.runtime.local_cluster
    Case("cluster-processes-zero", "spade_jax.runtime.local_cluster", ["--processes=0", "--", "true"],
         ("--processes must be >= 1",)),
    Case("cluster-devices-negative", "spade_jax.runtime.local_cluster", ["--devices=-1", "--", "true"],
         ("--devices must be >= 1",)),
    Case("cluster-log-dir-is-a-file", "spade_jax.runtime.local_cluster",
         ["--processes=1", "--log_dir={tmp}/log", "--", "true"], ("--log_dir", "is a file"),
         lambda env: (env.tmp / "log").write_text("mine")),
    Case("cluster-command-not-found", "spade_jax.runtime.local_cluster",
         ["--processes=1", "--", "no_such_command_xyz"], ("command not found",)),
    Case("cluster-no-command", "spade_jax.runtime.local_cluster", ["--processes=1"], ("no command",)),
    Case("cluster-timeout", "spade_jax.runtime.local_cluster", ["--timeout=-1", "--", "true"],
         ("--timeout must be a positive number",)),
    # more of a user's mistakes
    Case("profile-steps-reversed", "lra.main", LRA_SMOKE + ["--config.profile_steps=(5,2)"],
         ("config.profile_steps must be () or (first, last)",)),
    Case("eval-batch-negative", "lra.main", LRA_SMOKE + ["--config.eval_batch_size=-8"],
         ("config.eval_batch_size must be >= 0",)),
    Case("adam-with-weight-decay", "lra.main", LRA_SMOKE + ["--config.optimizer.name=adam"],
         ("has no weight decay", "adamw")),
    Case("mesh-unknown-axis", "lra.main", LRA_SMOKE + ["--config.mesh.pipeline=2"],
         ("config.mesh.pipeline",)),
    Case("cudnn-bidirectional", "lra.main", LRA_SMOKE + ["--config.model.attention_impl=cudnn",
                                                         "--config.model.position=none"],
         ("model.attention_impl='cudnn' needs model.causal=True",)),
    Case("relpos-distance-zero", "lra.main", LRA_SMOKE + ["--config.model.relpos_max_distance=0"],
         ("model.relpos_max_distance must be a positive integer",)),
    Case("lm-eval-batch-not-divisible", "lm.main", LM_DATA + ["--config.eval_batch_size=3"],
         ("config.eval_batch_size (3)",), _lm()),
    Case("lm-not-causal", "lm.main", LM_DATA + ["--config.model.causal=False"],
         ("model.head='lm' needs model.causal=True",), _lm()),
    Case("lm-bidirectional-s4", "lm.main", LM_DATA + ["--config.model.s4.bidirectional=True"],
         ("model.s4.bidirectional must be False",), _lm()),
    Case("lm-linear-input", "lm.main", LM_DATA + ["--config.model.input_encoder=linear"],
         ("model.input_encoder must be 'embed'",), _lm()),
    Case("lm-cls-pooling", "lm.main", LM_DATA + ["--config.model.pooling=cls"],
         ("model.pooling='cls' reads position 0",), _lm()),
    Case("generate-num-negative", "lra.generate", ["--task=text", "--out={data}", "--num=-5"],
         ("--num must be >= 3",)),
    Case("report-no-runs", "lra.report", [], ("the following arguments are required",)),
    Case("corpus-unknown-flag", "lm.corpus", ["--out={data}", "--bogus"],
         ("unrecognized arguments", "--bogus")),
    # spade_jax.aot
    Case("aot-unknown-accelerator", "spade_jax.aot",
         [f"--config={LISTOPS}:smoke", "--accelerator=v5e-8"],
         ("--accelerator=v5e-8: not a Cloud TPU accelerator type", "v5litepod-8")),
    Case("aot-no-accelerator", "spade_jax.aot", [f"--config={LISTOPS}:smoke"],
         ("--accelerator is required",)),
    Case("aot-unknown-step", "spade_jax.aot",
         [f"--config={LISTOPS}:smoke", "--accelerator=v5litepod-8", "--steps=train,infer"],
         ("--steps: unknown step(s) ['infer']",)),
    Case("aot-slices-zero", "spade_jax.aot",
         [f"--config={LISTOPS}:smoke", "--accelerator=v5litepod-8", "--slices=0"],
         ("--slices",)),
    Case("aot-unknown-field", "spade_jax.aot",
         [f"--config={LISTOPS}:smoke", "--accelerator=v5litepod-8", "--config.batch=8"],
         ("config.batch", "batch_size")),
    Case("aot-config-file-fails", "spade_jax.aot", ["--config={tmp}/mine.py",
                                                    "--accelerator=v5litepod-8"],
         ("mine.py, line 2: NameError",),
         _config_file("def get_config(arg=None):\n    return undefined_name\n")),
]


def _fill(argv, env):
    return [a.replace("{data}", str(env.data)).replace("{work}", str(env.work))
            .replace("{tmp}", str(env.tmp)) for a in argv]


def test_the_table_covers_every_entry_point_and_240_inputs():
    assert len(CASES) >= 240 and len({c.id for c in CASES}) == len(CASES), len(CASES)
    assert {c.entry for c in CASES} == set(ENTRY_POINTS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.entry}:{c.id}")
def test_bad_input_is_named_without_traceback_and_changes_nothing(case, tmp_path, pristine,
                                                                   request, capsys, monkeypatch):
    monkeypatch.setenv("SPADE_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SPADE_JAX_TRACEBACK", raising=False)
    for name, value in (case.environ or {}).items():
        monkeypatch.setenv(name, value)
    env = Env(tmp_path, pristine)
    env.lm_run = (request.getfixturevalue("lm_run") if case.setup in (_lm_trained, _lm_changed)
                  else None)
    env.release = None
    if case.setup:
        case.setup(env)
    data_before = digest(env.data) if env.data.is_dir() else None
    work_before = digest(env.work) if env.work.is_dir() else env.work.exists()
    try:
        status, output = run_cli(case.entry, _fill(case.argv, env), capsys)
        work_after = digest(env.work) if env.work.is_dir() else env.work.exists()
    finally:
        if env.release:
            env.release()
    assert status == 2, (status, output)  # a user error: not accepted silently, not a bug
    assert "Traceback" not in output, output
    assert "error: " in output, output
    message = output[output.index("error: "):]
    for expected in case.expect:
        assert expected in message, f"{expected!r} not in {message!r}"
    if data_before is not None:  # nothing lost
        assert digest(env.data) == data_before
    if case.keep_workdir:
        assert work_after == work_before
    else:
        assert not env.work.exists(), os.listdir(env.work)


def test_a_traceback_only_when_asked(tmp_path, capsys, monkeypatch):
    argv = [f"--config={LISTOPS}:smoke", f"--workdir={tmp_path}", "--config.nonexistent=1"]
    monkeypatch.delenv("SPADE_JAX_TRACEBACK", raising=False)
    status, output = run_cli("lra.main", argv, capsys)
    assert status == 2 and "Traceback" not in output and output.count("\n") == 1
    status, output = run_cli("lra.main", argv + ["--verbosity=1"], capsys)
    assert status == 2 and "Traceback" in output and "error: config.nonexistent" in output
    monkeypatch.setenv("SPADE_JAX_TRACEBACK", "1")
    status, output = run_cli("lra.report", [str(tmp_path)], capsys)
    assert status == 2 and "Traceback" in output and "holds no results.json" in output
    run_cli("lra.main", argv, capsys)  # verbosity back to its default for later tests


def test_a_bug_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")
    monkeypatch.setattr(lra.report, "table", broken)
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(RuntimeError, match="a bug"):
        ENTRY_POINTS["lra.report"](["lra.report", str(tmp_path), f"--out={tmp_path}/t.md"])


# One real process per entry point: the message and exit status end to end, no traceback.
SUBPROCESSES = [
    ("lra.main", [f"--config={LISTOPS}:smoke", "--workdir=WORK", "--config.nonexistent=1"],
     "config.nonexistent"),
    ("lm.main", [f"--config={WIKITEXT}:smoke", "--workdir=WORK", "--config.data_dir=WORK"],
     "does not exist"),
    ("lm.evaluate", ["--workdir=WORK"], "does not exist"),
    ("lm.generate", ["--workdir=WORK", "--max_new_tokens=-5"], "--max_new_tokens"),
    ("lra.generate", ["--task=listops", "--out=WORK", "--num=2"], "--num"),
    ("lm.corpus", ["--out=/dev/null"], "is a file"),
    ("lra.report", ["WORK"], "results.json"),
    ("benchmarks.mfu", ["--quick", "--set", "model.nonexistent=1"], "model.nonexistent"),
    # a platform this machine does not have (JAX picks its backends once per process)
    ("lra.main", [f"--config={LISTOPS}:smoke", "--workdir=WORK", "JAX_PLATFORMS=tpu"],
     "names a platform this machine does not have"),
]


def test_every_entry_point_in_a_real_process(tmp_path):
    """Started at once (each imports its libraries), then checked: exit 2 (argparse's usage
    errors also give 2), the message on stderr, no traceback. An argument NAME=value in upper
    case is an environment variable of that process."""
    env = dict(local_cluster.cpu_env(1), SPADE_JAX_MALLOC="system",
               SPADE_JAX_CACHE=str(tmp_path / "cache"))
    env.pop("SPADE_JAX_TRACEBACK", None)
    def start(module, argv):
        variable = re.compile(r"^[A-Z_]+=")
        extra = dict(a.split("=", 1) for a in argv if variable.match(a))
        argv = [a.replace("WORK", str(tmp_path / "nowhere")) for a in argv
                if not variable.match(a)]
        return subprocess.Popen([sys.executable, "-m", module] + argv, cwd=ROOT,
                                env={**env, **extra}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    procs = [(module, expected, start(module, argv)) for module, argv, expected in SUBPROCESSES]
    for module, expected, proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, (module, out, err)
        assert "Traceback" not in out + err and expected in err, (module, err)
    assert not (tmp_path / "nowhere").exists()
