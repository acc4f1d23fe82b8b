"""A pod slice on one machine: several JAX processes (localhost coordinator, gloo CPU collectives)
running the real entry points, started by spade_jax.runtime.local_cluster.

Shown here: 2 processes x 4 devices train ListOps and the LM exactly like 1 process x 8 devices
and write one results.json; every validation / test example is scored once; kill -9 of every
process then a restart is bitwise the uninterrupted run; SIGTERM to ONE process stops both at the
same step, saved once, with exit status 75; checkpoints restore across host counts (2 -> 1 and
1 -> 2 processes); 4 processes x 2 devices under SLURM's variables.

The tests share reference runs (session fixtures; tests/conftest.py's scheduler keeps this file
in one xdist worker).
The LM, SLURM-variable, 1 -> 2 host and kill -9 cases are `long` (about 5 minutes together on
2 cores).
"""
import collections
import json
import os
import signal
import sys
import time

import numpy as np
import pytest

from spade_jax.runtime import local_cluster
from spade_jax.runtime.process import EXIT_PREEMPTED
from spade_jax.train import metrics

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 300
STEPS = 40  # long enough to signal a run between its first checkpoint (10) and its end
LISTOPS = [f"--config={ROOT}/configs/listops.py:smoke", "--config.batch_size=8",
           f"--config.num_train_steps={STEPS}", "--config.checkpoint_every=10",
           "--config.max_eval_batches=0", "--config.eval_batch_size=8", "--config.peak_flops=1e12"]
LM = [f"--config={ROOT}/configs/wikitext103.py:smoke", "--config.batch_size=8",
      "--config.num_train_steps=6", "--config.max_eval_batches=0", "--config.eval_batch_size=8",
      "--config.peak_flops=1e12"]


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """One data cache for these runs (the generated ListOps set and the LM stand-in corpus)."""
    return str(tmp_path_factory.mktemp("cache"))


def _start(main, args, workdir, processes, devices, cache, style="jax"):
    command = [sys.executable, "-m", main, *args, f"--workdir={workdir}"]
    return local_cluster.start(command, processes=processes, devices=devices, cwd=ROOT,
                               log_dir=os.path.join(f"{workdir}-logs", str(time.monotonic_ns())),
                               style=style, env=dict(os.environ, SPADE_JAX_CACHE=cache))


def _run(main, args, workdir, processes, devices, cache, style="jax", expect=0):
    cluster = _start(main, args, workdir, processes, devices, cache, style)
    statuses = cluster.wait(TIMEOUT)
    assert statuses == [expect] * processes, "\n".join(cluster.output(i)[-3000:]
                                                       for i in range(processes))
    return cluster


def _wait_for(path, cluster):
    """Waits until `path` exists while the cluster runs (fails if it ended first)."""
    deadline = time.monotonic() + TIMEOUT
    while not os.path.exists(path):
        assert all(p.poll() is None for p in cluster.procs), cluster.output(0)[-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _records(workdir, split):
    """{step: record} of metrics.jsonl's `split` records."""
    return {r["step"]: r for r in metrics.read_records(workdir) if r["split"] == split}


def _losses(workdir):
    return {step: r["loss"] for step, r in _records(workdir, "train").items()}


def _state(workdir, step):
    """The saved TrainState at `step` as numpy arrays (flattened path -> array)."""
    import jax
    import orbax.checkpoint as ocp
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    checkpointer = ocp.PyTreeCheckpointer()
    metadata = checkpointer.metadata(path).item_metadata.tree
    tree = checkpointer.restore(path, restore_args=jax.tree_util.tree_map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), metadata))
    return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def _assert_close_runs(a, b, exact=False):
    """Same per-step losses, final state, validation and test metrics (bitwise when exact)."""
    la, lb = _losses(a), _losses(b)
    assert sorted(la) == sorted(lb) == list(range(1, STEPS + 1))
    check = np.testing.assert_array_equal if exact else (
        lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-5))
    check([la[s] for s in sorted(la)], [lb[s] for s in sorted(lb)])
    sa, sb = _state(a, STEPS), _state(b, STEPS)
    assert sa.keys() == sb.keys() and any("opt_state" in k for k in sa)
    for key in sa:
        check(sa[key], sb[key])
    for split in ("validation", "test_last"):
        ra, rb = _records(a, split)[STEPS], _records(b, split)[STEPS]
        assert ra["scored"] == rb["scored"]
        check(ra["accuracy"], rb["accuracy"])


@pytest.fixture(scope="session")
def two_hosts(cache, tmp_path_factory):
    """The uninterrupted ListOps smoke on 2 processes x 4 devices."""
    workdir = str(tmp_path_factory.mktemp("two-hosts") / "run")
    _run("lra.main", LISTOPS, workdir, 2, 4, cache)
    return workdir


@pytest.fixture(scope="session")
def one_host(cache, tmp_path_factory):
    """The same run on 1 process x 8 devices."""
    workdir = str(tmp_path_factory.mktemp("one-host") / "run")
    _run("lra.main", LISTOPS, workdir, 1, 8, cache)
    return workdir


def _listops_data(cache):
    """The generated ListOps folder the smoke runs read."""
    return next(os.path.join(cache, "lra_generated", d)
                for d in os.listdir(os.path.join(cache, "lra_generated")) if d.startswith("listops"))


def _split_sizes(cache):
    from lra.data import load_split
    return {split: len(load_split("listops", split, _listops_data(cache), max_length=40))
            for split in ("train", "validation", "test")}


def test_two_processes_train_like_one_and_score_every_example_once(two_hosts, one_host, cache):
    _assert_close_runs(two_hosts, one_host)
    sizes = _split_sizes(cache)
    for workdir in (two_hosts, one_host):
        assert _records(workdir, "validation")[STEPS]["scored"] == sizes["validation"]
        assert _records(workdir, "test_last")[STEPS]["scored"] == sizes["test"]
        results = json.load(open(os.path.join(workdir, "results.json")))
        assert results["steps"] == STEPS and results["task"] == "listops"
    # one writer: nothing else was written beside the workdir
    assert sorted(os.listdir(os.path.dirname(two_hosts))) == ["run", "run-logs"]


def test_every_training_example_is_used_once_per_epoch_across_processes(cache, one_host):
    """The real ListOps reader and pipeline, 2 hosts' iterators side by side."""
    from lra.tasks import LRATask
    task = LRATask("listops", _listops_data(cache), {"max_length": 40})
    n = len(task.source("train"))
    hosts = [task.train_iterator(batch_size=4, seed=0, shard_index=k, shard_count=2)
             for k in range(2)]
    rows = []
    for _ in range(n):  # n global batches of 8 = 8 epochs
        for it in hosts:
            batch = next(it)
            rows += [tuple(x) for x in batch["inputs"]]
    source = task.source("train")
    expected = collections.Counter(tuple(source[i]["inputs"]) for i in range(n))
    for epoch in range(8):  # each epoch's rows are the training split, each example once
        assert collections.Counter(rows[epoch * n:(epoch + 1) * n]) == expected
    assert hosts[0].get_state() == hosts[1].get_state()


@pytest.mark.long  # 2 minutes on 2 cores; the SIGTERM case below restarts a 2-process run too
def test_kill_9_of_every_process_then_restart_is_bitwise_the_uninterrupted_run(two_hosts, cache,
                                                                               tmp_path):
    workdir = str(tmp_path / "run")
    cluster = _start("lra.main", LISTOPS, workdir, 2, 4, cache)
    _wait_for(os.path.join(workdir, "checkpoints", "10"), cluster)
    for i in range(2):
        cluster.signal(i, signal.SIGKILL)
    cluster.wait(TIMEOUT)
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    restarted = _run("lra.main", LISTOPS, workdir, 2, 4, cache)
    assert "resuming from the checkpoint at step" in restarted.output(0)
    _assert_close_runs(workdir, two_hosts, exact=True)


def test_sigterm_to_one_process_stops_all_at_one_step_then_resumes_on_one_process(
        two_hosts, cache, tmp_path):
    workdir = str(tmp_path / "run")
    cluster = _start("lra.main", LISTOPS, workdir, 2, 4, cache)
    _wait_for(os.path.join(workdir, "checkpoints", "10"), cluster)
    cluster.signal(1)  # one host only
    assert cluster.wait(TIMEOUT) == [EXIT_PREEMPTED] * 2, cluster.output(1)[-3000:]
    stopped = [int(o.split("preempted at step ")[1].split(":")[0])
               for o in map(cluster.output, range(2))]
    assert stopped[0] == stopped[1] < STEPS
    assert str(stopped[0]) in os.listdir(os.path.join(workdir, "checkpoints"))
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    # restart on another host count: 1 process x 8 devices restores the 2-process checkpoint
    resumed = _run("lra.main", LISTOPS, workdir, 1, 8, cache)
    assert f"resuming from the checkpoint at step {stopped[0]}" in resumed.output(0)
    _assert_close_runs(workdir, two_hosts)


@pytest.mark.long
def test_a_one_process_checkpoint_resumes_on_two_processes(two_hosts, cache, tmp_path):
    workdir = str(tmp_path / "run")
    cluster = _start("lra.main", LISTOPS, workdir, 1, 8, cache)
    _wait_for(os.path.join(workdir, "checkpoints", "10"), cluster)
    cluster.signal(0)
    assert cluster.wait(TIMEOUT) == [EXIT_PREEMPTED]
    resumed = _run("lra.main", LISTOPS, workdir, 2, 4, cache)
    assert "resuming from the checkpoint at step" in resumed.output(0)
    _assert_close_runs(workdir, two_hosts)


@pytest.mark.long
def test_language_model_on_two_processes_matches_one(cache, tmp_path):
    runs = {}
    for processes, devices in ((2, 4), (1, 8)):
        runs[processes] = str(tmp_path / f"lm-{processes}")
        _run("lm.main", LM, runs[processes], processes, devices, cache)
    a, b = (_records(runs[p], "train") for p in (2, 1))
    assert sorted(a) == sorted(b) == list(range(1, 7))
    np.testing.assert_allclose([a[s]["loss"] for s in a], [b[s]["loss"] for s in a], rtol=2e-4)
    va, vb = (_records(runs[p], "validation")[6] for p in (2, 1))
    assert va["scored"] == vb["scored"] > 0
    np.testing.assert_allclose(va["token_loss"], vb["token_loss"], rtol=2e-4)


@pytest.mark.long
def test_four_processes_of_two_devices_under_slurm_variables(one_host, cache, tmp_path):
    workdir = str(tmp_path / "run")
    _run("lra.main", LISTOPS, workdir, 4, 2, cache, style="slurm")
    _assert_close_runs(workdir, one_host)
