"""Issue 17's defects, one test (or two) each where tests/test_bad_inputs.py's table does not
already show them: damaged checkpoints, divergence, the workdir lock, a refused workdir left
byte for byte, the data folders (Pathfinder paths, generated data, read-only data, temporary
folders of killed builds), UTF-8 errors."""
import errno
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import fsspec
import numpy as np
import orbax.checkpoint as ocp
import pytest
from fsspec.implementations.memory import MemoryFileSystem

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "train"))
import synthetic  # noqa: E402

from lra.data import DataError, load_split  # noqa: E402
from lra.generate import __main__ as lra_generate, listops as gen_listops  # noqa: E402
from lra.generate import pathfinder as gen_pathfinder  # noqa: E402
from lra.tasks import LRATask  # noqa: E402
from spade_jax.runtime import lock, paths  # noqa: E402
from spade_jax.model import models  # noqa: E402
from spade_jax.train import sharding  # noqa: E402
from spade_jax.model.config import ModelConfig  # noqa: E402
from spade_jax.runtime.errors import PathError  # noqa: E402
from spade_jax.train import checkpoint, optim, state as state_lib  # noqa: E402
from spade_jax.train import workdir as workdir_lib  # noqa: E402
from spade_jax.train.divergence import DivergedError  # noqa: E402
from spade_jax.train.loop import train_and_evaluate  # noqa: E402


def digest(folder) -> dict:
    out = {}
    for parent, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --- 3. a damaged latest checkpoint ----------------------------------------------------------

def _config(**overrides):
    return synthetic.small_config(**{"num_train_steps": 2, "checkpoint_every": 1,
                                     "keep_checkpoints": 3, "eval_every": 0, **overrides})


def _state(config):
    """(initial TrainState, its abstract twin) of the synthetic model under `config`."""
    mesh = sharding.make_mesh(config.mesh)
    model = models.build_model(ModelConfig.from_config(config.model))
    tx, _ = optim.make_optimizer(config.optimizer, config.num_train_steps)
    state, shardings = state_lib.create_sharded_state(
        model, tx, (np.ones((1, synthetic.LENGTH), np.int32),), 0, mesh,
        sharding.rules_from_config(config.logical_axis_rules))
    return state, state_lib.abstract_state(state, shardings)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A synthetic run's workdir with checkpoints at steps 1 and 2 (saved as the loop saves
    them, without training: no train step to compile)."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    config = _config()
    workdir_lib.record(str(workdir), config)
    state, _ = _state(config)
    ckpts = checkpoint.Checkpoints(str(workdir), 3, False)
    for step in (1, 2):
        ckpts.save(ckpts.latest, step, state.replace(step=state.step + step),
                   {"iterator": {"index": step}, "best_score": -np.inf})
    ckpts.wait()
    ckpts.close()
    return workdir


def _empty_metadata(step):
    (step / "state" / "_METADATA").write_bytes(b"")


def _broken_data(step):
    (step / "data" / "metadata").write_text('{"iter')


def _empty_folder(step):
    shutil.rmtree(step)
    step.mkdir()


def _truncated_arrays(step):
    for name in os.listdir(step / "state" / "d"):
        path = step / "state" / "d" / name
        path.write_bytes(path.read_bytes()[:100])


def _deleted_arrays(step):
    for name in os.listdir(step / "state" / "d"):
        os.remove(step / "state" / "d" / name)


DAMAGE = {"emptied _METADATA": (_empty_metadata, "state/_METADATA is not valid JSON"),
          "broken data/metadata": (_broken_data, "data/metadata is not valid JSON"),
          "empty step folder": (_empty_folder, "state/_METADATA is missing"),
          "truncated arrays": (_truncated_arrays, "cannot be read"),
          "deleted array files": (_deleted_arrays, "NOT_FOUND")}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_checkpoint_is_set_aside_and_the_one_before_restored(kind, trained, tmp_path,
                                                                       capsys):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    damage, named = DAMAGE[kind]
    damage(workdir / "checkpoints" / "2")
    damaged = digest(workdir / "checkpoints" / "2")
    ckpts = checkpoint.Checkpoints(str(workdir), 3, False)
    state, data_state, step = ckpts.restore(ckpts.latest, _state(_config())[1])
    ckpts.close()
    assert step == 1 and int(state.step) == 1 and data_state["iterator"] == {"index": 1}
    message = capsys.readouterr().out
    assert named in message and f"{workdir}/checkpoints/2" in message, message
    assert digest(workdir / "damaged" / "checkpoints-2") == damaged  # kept, never deleted
    assert sorted(os.listdir(workdir / "checkpoints")) == ["1"]


def test_an_array_read_failure_wrapped_by_orbax_is_damage_and_a_bug_is_not(trained, tmp_path,
                                                                            monkeypatch, capsys):
    """Orbax raises a bare Exception from tensorstore's OUT_OF_RANGE ValueError when an array
    file is cut short after its metadata: the checkpoint is set aside like any damaged one. An
    exception with no read failure in its chain is a bug: it propagates, nothing is moved."""
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    real = ocp.CheckpointManager.restore

    def failing(self, step, *args, **kwargs):
        if step != 2:
            return real(self, step, *args, **kwargs)
        try:
            raise ValueError('OUT_OF_RANGE: Error reading "params.encoder.layer_0.ffn.wi.kernel/0.0"')
        except ValueError as e:
            raise Exception("Encountered error while reading array index") from e

    monkeypatch.setattr(ocp.CheckpointManager, "restore", failing)
    ckpts = checkpoint.Checkpoints(str(workdir), 3, False)
    _, _, step = ckpts.restore(ckpts.latest, _state(_config())[1])
    ckpts.close()
    assert step == 1 and (workdir / "damaged" / "checkpoints-2").is_dir()
    assert "its arrays cannot be read (ValueError: OUT_OF_RANGE" in capsys.readouterr().out

    workdir = tmp_path / "run-bug"
    shutil.copytree(trained, workdir)
    monkeypatch.setattr(ocp.CheckpointManager, "restore",
                        lambda self, step, *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    ckpts = checkpoint.Checkpoints(str(workdir), 3, False)
    with pytest.raises(RuntimeError, match="a bug"):
        ckpts.restore(ckpts.latest, _state(_config())[1])
    ckpts.close()
    assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2"]
    assert not (workdir / "damaged").exists()


def test_the_run_resumes_past_a_damaged_checkpoint_and_lm_runs_skip_it(trained, tmp_path,
                                                                      capsys):
    from lm.runs import restore_params
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    _empty_folder(workdir / "checkpoints" / "2")  # was: KeyError 'Unknown key: state'
    params, step = restore_params(str(workdir), "last")  # read-only: skipped, not moved
    assert step == 1 and os.listdir(workdir / "checkpoints" / "2") == []
    results = train_and_evaluate(_config(), str(workdir), synthetic.SyntheticTask())
    out = capsys.readouterr().out
    assert "resuming from the checkpoint at step 1" in out and "is damaged" in out
    assert results["steps"] == 2 and (workdir / "damaged" / "checkpoints-2").is_dir()
    assert ocp.CheckpointManager(str(workdir / "checkpoints")).all_steps() == [1, 2]


# --- 5. a workdir refused for another config is left byte for byte ----------------------------

def test_a_workdir_refused_for_other_optimiser_settings_is_not_touched(trained, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    before = digest(workdir)
    with pytest.raises(checkpoint.CheckpointMismatchError, match="optimiser settings differ"):
        train_and_evaluate(_config(**{"optimizer.name": "sgd"}), str(workdir),
                           synthetic.SyntheticTask())
    assert digest(workdir) == before  # config.json too (it was overwritten first)


# --- 4. divergence under skip_nonfinite --------------------------------------------------------

class _NanFrom(synthetic.SyntheticTask):
    """Batches from index `start` on weigh NaN: every update after it is non-finite."""

    def __init__(self, start):
        super().__init__()
        self.start = start

    def train_iterator(self, **kwargs):
        it = super().train_iterator(**kwargs)
        task, plain = self, type(it).__next__

        class Iterator(type(it)):
            def __next__(self):
                index = self.index
                batch = plain(self)
                if index >= task.start:
                    batch["weights"] = batch["weights"] * np.nan
                return batch
        it.__class__ = Iterator
        return it


def test_non_finite_parameters_stop_the_run_before_they_are_saved(tmp_path):
    config = _config(num_train_steps=4, skip_nonfinite=True, **{"optimizer.learning_rate": 1e38})
    with pytest.raises(DivergedError, match=r"parameters are no longer finite after step 2"):
        train_and_evaluate(config, str(tmp_path), synthetic.SyntheticTask())
    assert ocp.CheckpointManager(str(tmp_path / "checkpoints")).all_steps() == [1]


def test_too_many_skipped_updates_stop_the_run(tmp_path):
    config = _config(num_train_steps=6, skip_nonfinite=True, skip_window=4,
                     max_skipped_fraction=0.25)
    with pytest.raises(DivergedError, match=r"2 of the last 3 updates \(to step 3\)"):
        train_and_evaluate(config, str(tmp_path), _NanFrom(1))
    assert ocp.CheckpointManager(str(tmp_path / "checkpoints")).all_steps() == [1, 2]


# --- 6. one run per workdir --------------------------------------------------------------------

HOLD = ("import sys, time; from spade_jax.runtime import lock; lock.WorkdirLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(600)")


def test_a_second_run_is_refused_and_a_dead_holder_is_taken_over(tmp_path, caplog):
    workdir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = digest(workdir)
        with pytest.raises(PathError, match=rf"in use by another run: process {holder.pid} on "
                                            rf"host {socket.gethostname()}"):
            train_and_evaluate(_config(), str(workdir), synthetic.SyntheticTask())
        assert digest(workdir) == before  # no config.json, no metrics.jsonl
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    with caplog.at_level(logging.WARNING):
        with lock.WorkdirLock(workdir):  # the kernel dropped the dead holder's flock
            held = json.loads((workdir / lock.LOCK_FILE).read_text())
            assert held["pid"] == os.getpid()
    assert f"took over the lock of process {holder.pid}" in caplog.text
    assert not (workdir / lock.LOCK_FILE).exists()  # removed when released


class _MemoryGCS(MemoryFileSystem):
    protocol = ("gs", "gcs")

    def __init__(self, *args, finalize_on_close=True, **kwargs):
        super().__init__(*args, **kwargs)


@pytest.fixture
def gcs(monkeypatch, tmp_path):
    monkeypatch.setenv("EPATH_USE_TF", "false")
    for protocol in ("gs", "gcs"):
        fsspec.register_implementation(protocol, _MemoryGCS, clobber=True)
    _MemoryGCS.store.clear()
    _MemoryGCS.pseudo_dirs.clear()
    _MemoryGCS.pseudo_dirs.append("")
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)
    yield f"gs://bucket/{tmp_path.name}"
    _MemoryGCS.store.clear()


def test_on_object_storage_the_lock_is_a_file_with_a_heartbeat(gcs):
    path = paths.workdir_path(gcs) / lock.LOCK_FILE
    holder = lock.WorkdirLock(gcs)
    holder.acquire()
    first = json.loads(path.read_text())["heartbeat"]
    time.sleep(0.3)
    assert json.loads(path.read_text())["heartbeat"] > first  # refreshed while held
    with pytest.raises(PathError, match=f"process {os.getpid()}"):
        lock.WorkdirLock(gcs).acquire()
    holder.release()
    assert not path.exists()
    other = {"host": "other-host", "pid": 1, "command": "python -m lra.main", "since": "-"}
    paths.write_json(path, dict(other, heartbeat=time.time()))  # another host, alive
    with pytest.raises(PathError, match="on host other-host.*last heartbeat 0 s ago"):
        lock.WorkdirLock(gcs).acquire()
    for stale in (dict(other, heartbeat=time.time() - 2 * lock.STALE_S),  # stopped beating
                  dict(other, host=socket.gethostname(), pid=dead_pid(),
                       heartbeat=time.time())):  # a dead process of this host
        paths.write_json(path, stale)
        with lock.WorkdirLock(gcs):
            assert json.loads(path.read_text())["pid"] == os.getpid()


# --- 1, 2, 8, 10, 11: data folders ---------------------------------------------------------------

@pytest.fixture(scope="module")
def pathfinder_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pathfinder")
    gen_pathfinder.write(str(root), 24, 0, image_size=32, difficulty="curv_baseline",
                         per_folder=12, processes=1)
    return root


def test_pathfinder_refuses_a_symbolic_link_out_of_its_folder(pathfinder_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(pathfinder_dir, data)
    secret = tmp_path / "secret.png"
    image = data / "pathfinder32" / "curv_baseline" / "imgs" / "0" / "sample_3.png"
    shutil.copy(image, secret)
    image.unlink()
    image.symlink_to(secret)
    with pytest.raises(DataError, match=r"0\.npy, line 4: image path 'imgs/0/sample_3.png' "
                                        r"leads outside"):
        load_split("pathfinder", "train", str(data), difficulty="curv_baseline")


def test_generate_publishes_complete_folders_and_overwrites_only_when_asked(tmp_path,
                                                                           monkeypatch, capsys):
    out = tmp_path / "release"
    args = ["--task=listops", f"--out={out}", "--num=12", "--min_length=5", "--max_length=40"]
    assert lra_generate.main(args) == 0
    first = digest(out)

    def fails(folder, *args, **kwargs):  # dies half-way through writing
        os.makedirs(os.path.join(folder, "listops-1000"))
        open(os.path.join(folder, "listops-1000", "basic_train.tsv"), "w").close()
        raise RuntimeError("killed")
    monkeypatch.setattr(gen_listops, "write", fails)
    with pytest.raises(RuntimeError, match="killed"):
        lra_generate.main(args + ["--overwrite"])
    assert digest(out) == first and sorted(os.listdir(out)) == ["listops-1000"]
    monkeypatch.undo()
    assert lra_generate.main(args + ["--seed=1", "--overwrite"]) == 0
    assert digest(out) != first and sorted(os.listdir(out)) == ["listops-1000"]
    capsys.readouterr()


def test_corpus_refuses_existing_files_and_replaces_them_with_overwrite(tmp_path, monkeypatch,
                                                                        capsys):
    import lm.corpus

    def write(out, sources=None):
        for split in ("train", "valid", "test"):
            with open(os.path.join(out, f"wiki.{split}.tokens"), "w") as f:
                f.write(f" new {split} \n")
    monkeypatch.setattr(lm.corpus, "write", write)
    out = tmp_path / "wt"
    out.mkdir()
    (out / "wiki.valid.tokens").write_text(" mine \n")
    assert lm.corpus.main([f"--out={out}"]) == 2
    assert sorted(os.listdir(out)) == ["wiki.valid.tokens"]
    assert (out / "wiki.valid.tokens").read_text() == " mine \n"
    assert lm.corpus.main([f"--out={out}", "--overwrite"]) == 0
    assert (out / "wiki.valid.tokens").read_text() == " new valid \n"
    assert sorted(os.listdir(out)) == [f"wiki.{s}.tokens" for s in ("test", "train", "valid")]
    assert "exists" in capsys.readouterr().err


@pytest.fixture(scope="module")
def listops_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("listops")
    gen_listops.write(str(root), 30, 0, min_length=5, max_length=40)
    return root


def test_read_only_data_takes_the_cache_folder_the_config_names(listops_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(listops_dir, data)
    before = digest(data)
    task = LRATask("listops", str(data), {"max_length": 40}, cache_dir=str(tmp_path / "cache"))
    assert len(task.source("train")) > 0
    assert digest(data) == before and not (data / ".lra_cache").exists()
    assert any(name.startswith("listops-train-") for name in os.listdir(tmp_path / "cache"))


def test_temporary_folders_of_killed_builds_are_removed_by_the_next(listops_dir, tmp_path):
    cache = tmp_path / "cache"
    host = socket.gethostname()
    left = {"dead": f".listops-train-tmp@{host}@{dead_pid()}@x1",
            "live": f".listops-train-tmp@{host}@{os.getpid()}@x2",
            "old-elsewhere": ".listops-train-tmp@other-host@12@x3",
            "recent-elsewhere": ".listops-train-tmp@other-host@13@x4",
            "not-ours": ".listops-train-abcdef"}
    for name in left.values():
        (cache / name).mkdir(parents=True)
        (cache / name / "inputs.npy").write_bytes(b"half")
    day_ago = time.time() - 2 * paths.STALE_TEMP_S
    os.utime(cache / left["old-elsewhere"], (day_ago, day_ago))
    load_split("listops", "train", str(listops_dir), cache_dir=str(cache), max_length=40)
    remaining = set(os.listdir(cache))
    assert {left["live"], left["recent-elsewhere"], left["not-ours"]} <= remaining
    assert not {left["dead"], left["old-elsewhere"]} & remaining
    assert len([n for n in remaining if n.startswith("listops-train-")]) == 1


def test_a_damaged_metrics_log_is_read_around(tmp_path):
    from lra import report
    from spade_jax.train import metrics
    (tmp_path / "metrics.jsonl").write_bytes(
        b'{"step": 1, "split": "train", "loss": 1.5}\n5\n\xff{"st\n[1]\n'
        b'{"step": 2, "split": "train"}\n{"step": 2, "split": "validation", "accuracy": 0.5}\n')
    assert [r["step"] for r in metrics.read_records(str(tmp_path))] == [1, 2, 2]
    assert report.plot_curve(str(tmp_path)).read_bytes()[:4] == b"\x89PNG"


def test_utf8_errors_name_the_file_line_and_byte_offset(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_bytes("héllo\n".encode() + b"ok\r\n" + b"bad \xff byte\n")
    with pytest.raises(DataError) as error:
        list(paths.text_lines(str(path)))
    offset = len("héllo\n".encode()) + len(b"ok\r\n") + 4
    assert f"{path}, line 3, byte offset {offset}: byte 0xff" in str(error.value)
    path.write_bytes("héllo\nok\r\n".encode())
    assert list(paths.text_lines(str(path))) == [(1, "héllo\n"), (2, "ok\r\n")]


# --- 3 and 6 on several processes ----------------------------------------------------------------

@pytest.mark.long
def test_two_processes_agree_on_the_checkpoint_and_on_the_lock(tmp_path):
    """A pod in miniature (2 processes x 4 devices): both skip the damaged latest checkpoint for
    the same older one, and both stop (exit 2) when another run holds the workdir."""
    from spade_jax.runtime import local_cluster
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    workdir = tmp_path / "run"
    env = dict(os.environ, SPADE_JAX_CACHE=str(tmp_path / "cache"))

    def cluster(steps, logs):
        command = [sys.executable, "-m", "lra.main", f"--config={root}/configs/listops.py:smoke",
                   "--config.batch_size=8", "--config.checkpoint_every=1",
                   "--config.keep_checkpoints=3", f"--config.num_train_steps={steps}",
                   f"--workdir={workdir}"]
        run = local_cluster.start(command, processes=2, devices=4, cwd=root, env=env,
                                  log_dir=str(tmp_path / logs))
        return run, run.wait(300)

    run, statuses = cluster(2, "first")
    assert statuses == [0, 0], run.output(0)[-3000:]
    (workdir / "checkpoints" / "2" / "state" / "_METADATA").write_bytes(b"")
    run, statuses = cluster(3, "resumed")
    assert statuses == [0, 0], run.output(0)[-3000:]
    assert "resuming from the checkpoint at step 1" in run.output(0)
    assert (workdir / "damaged" / "checkpoints-2").is_dir()
    assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2", "3"]
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        run, statuses = cluster(4, "refused")
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert statuses == [2, 2]
    assert f"in use by another run: process {holder.pid}" in run.output(0)
    assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2", "3"]


# --- Ctrl-C -------------------------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ctrl_c_in_training_saves_the_step_and_exits_130(tmp_path):
    """SIGINT to lra.main while it trains: a checkpoint at the current step, one line, exit
    status 130, no KeyboardInterrupt traceback; rerunning resumes from that step."""
    from spade_jax.runtime import local_cluster
    workdir = tmp_path / "run"
    env = dict(local_cluster.cpu_env(1), SPADE_JAX_CACHE=str(tmp_path / "cache"),
               SPADE_JAX_MALLOC="system")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lra.main", f"--config={ROOT}/configs/listops.py:smoke",
         f"--workdir={workdir}", "--config.num_train_steps=100000", "--config.checkpoint_every=0",
         "--config.log_every=1"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    metrics = workdir / "metrics.jsonl"
    while proc.poll() is None and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.05)  # waits on the state (two logged steps), not on a clock
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    assert "interrupted (Ctrl-C): saving a checkpoint at the next step" in err
    step = int(out.split("interrupted (Ctrl-C) at step ")[1].split(":")[0])
    assert "saved; rerun the same command to resume (exit status 130)" in out
    assert ocp.CheckpointManager(str(workdir / "checkpoints")).latest_step() == step >= 2
    assert not (workdir / "results.json").exists()


def test_ctrl_c_in_a_generator_leaves_nothing_and_says_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "new"

    def interrupted(folder, *args, **kwargs):  # Ctrl-C half-way through writing
        os.makedirs(os.path.join(folder, "listops-1000"))
        open(os.path.join(folder, "listops-1000", "basic_train.tsv"), "w").close()
        raise KeyboardInterrupt
    monkeypatch.setattr(gen_listops, "write", interrupted)
    status = lra_generate.main(["--task=listops", f"--out={out}", "--num=12"])
    text = capsys.readouterr()
    assert status == 130 and "Traceback" not in text.out + text.err
    assert text.err.strip() == "interrupted (Ctrl-C): stopped; nothing half-written was kept"
    assert not out.exists() or os.listdir(out) == []


# --- the data and the model, checked against each other ------------------------------------------

def _listops_copy(listops_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(listops_dir, data)
    return data


def test_a_damaged_token_cache_is_rebuilt_saying_so(listops_dir, tmp_path, capsys):
    """The cache is ours: an entry whose info.json is cut, or whose arrays are truncated, is
    rebuilt from the data (one line saying so), not a JSON or mmap traceback."""
    data = _listops_copy(listops_dir, tmp_path)
    split = load_split("listops", "train", str(data))
    expected = [split[i]["inputs"] for i in range(len(split))]
    for name, cut in (("info.json", 10), ("inputs.npy", 200)):
        path = os.path.join(split.path, name)
        with open(path, "rb") as f:
            head = f.read(cut)
        with open(path, "wb") as f:
            f.write(head)
        damaged = split.path
        split = load_split("listops", "train", str(data))
        for i, inputs in enumerate(expected):
            np.testing.assert_array_equal(split[i]["inputs"], inputs)
        out = capsys.readouterr().out
        assert f"the token cache {damaged} is damaged" in out and "rebuilding it" in out, out
    data_files = lambda folder: {k: v for k, v in digest(folder).items()  # noqa: E731
                                 if not k.startswith(".lra_cache")}
    assert data_files(data) == data_files(listops_dir)  # the data itself untouched


def test_each_split_says_what_was_cut_empty_or_out_of_vocabulary(tmp_path, capsys):
    """The reader's examples are counted when a split is cached, and the task says so in one
    line per split: nothing is cut, dropped or read as padding silently."""
    from lra.tasks import LRATask
    data = tmp_path / "data" / "listops-1000"
    data.mkdir(parents=True)
    long_row = "( [MAX " + " ".join("1" for _ in range(60)) + " ] )\t1"
    rows = {"train": ["( [MAX 1 2 ] )\t2", long_row, "( )\t0", "( [max a b c ] )\t2",
                      "( [MIN 3 4 ] )\t3"],
            "val": ["( [MAX 1 2 ] )\t2"] * 3, "test": ["( [MAX 1 2 ] )\t2"] * 3}
    for split, lines in rows.items():
        text = "Source\tTarget\n" + "\n".join(lines) + ("" if split == "test" else "\n")
        (data / f"basic_{split}.tsv").write_text(text)
    task = LRATask("listops", str(tmp_path / "data"), {"max_length": 40})
    for split in ("train", "validation", "test"):
        task.source(split)
    out = capsys.readouterr().out
    assert ("lra: listops train: 1 of 5 examples cut to 40 tokens; 1 empty; 1 mostly "
            "out-of-vocabulary tokens") in out
    assert "lra: listops validation" not in out  # nothing to say
    assert "basic_test.tsv ends without an end of line: it may have been cut short" in out


def test_the_models_sizes_are_checked_against_the_labels_and_token_ids(listops_dir, tmp_path):
    from lra.tasks import LRATask
    from spade_jax.model.config import ModelConfig, default_model_config
    data = _listops_copy(listops_dir, tmp_path)
    task = LRATask("listops", str(data), {"max_length": 40})
    task.source("train")
    fields = dict(default_model_config().to_dict(), vocab_size=17, num_classes=10, max_len=40)
    task.check_model(ModelConfig.from_config(fields))
    with pytest.raises(DataError, match=r"labels up to \d, but model.num_classes is 2: set "
                                        r"--config.model.num_classes=10"):
        task.check_model(ModelConfig.from_config(dict(fields, num_classes=2)))
    with pytest.raises(DataError, match=r"token ids up to 1\d, but model.vocab_size is 5: set "
                                        r"--config.model.vocab_size=17"):
        task.check_model(ModelConfig.from_config(dict(fields, vocab_size=5)))


def test_too_little_disk_or_a_full_disk_names_the_workdir_and_the_step(tmp_path, monkeypatch,
                                                                       capsys):
    """A disk too small for one checkpoint is refused before the first step (nothing written);
    a disk that fills up during a save is one error naming the step to resume from."""
    config = _config()
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(PathError, match=r"its disk has 0.00 GiB free, and one checkpoint"):
        train_and_evaluate(config, str(tmp_path / "small"), synthetic.SyntheticTask())
    assert not (tmp_path / "small").exists()  # refused before anything was written
    monkeypatch.setattr(shutil, "disk_usage", real)

    state, _ = _state(config)
    ckpts = checkpoint.Checkpoints(str(tmp_path / "full"), 3, False)
    ckpts.save(ckpts.latest, 1, state, {"iterator": {"index": 1}})
    original = ocp.CheckpointManager.save

    def full(self, step, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ocp.CheckpointManager, "save", full)
    with pytest.raises(PathError, match=r"no space left on the disk of .*full while saving the "
                                        r"checkpoint at step 2: .*resumes from the last complete "
                                        r"checkpoint \(step 1\)"):
        ckpts.save(ckpts.latest, 2, state, {"iterator": {"index": 2}})
    monkeypatch.setattr(ocp.CheckpointManager, "save", original)
    ckpts.close()


def test_lra_report_counts_a_run_named_twice_once(tmp_path, capsys):
    import lra.report
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(
        {"task": "listops", "model": "spade", "variant": "quick", "wall_time_s": 1.0,
         "test_accuracy_at_best": 0.5}))
    assert lra.report.main([str(run), f"{run}/", f"--out={tmp_path}/t.md"]) == 0
    text = (tmp_path / "t.md").read_text()
    assert "listed twice" in text and "counted once" in text
    row = next(line for line in text.splitlines() if line.startswith("| spade"))
    assert "50.00" in row and "±" not in row and "n=2" not in row
