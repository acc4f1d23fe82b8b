"""The training engine on the synthetic task: sharding, resume after kill -9, SIGTERM, NaN guard,
gradient accumulation, checkpoint compatibility, optimiser groups, config errors."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import synthetic  # noqa: E402

from spade_jax.runtime import local_cluster  # noqa: E402
from spade_jax.train import checkpoint, optim  # noqa: E402
from spade_jax.train.loop import train_and_evaluate  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def _train_records(workdir):
    """{step: train record}, the last record of each step winning (a resumed run rewrites)."""
    records = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["split"] == "train":
                records[r["step"]] = r
    return records


def _spawn(workdir, devices=8, **overrides):
    env = local_cluster.cpu_env(devices)  # the suite's other XLA flags kept
    return subprocess.Popen([sys.executable, os.path.join(HERE, "synthetic.py"), str(workdir),
                             json.dumps(overrides)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _final_params(workdir):
    manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
    restored = manager.restore(manager.latest_step(),
                               args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return jax.tree_util.tree_leaves(restored["state"]["params"])


def test_sharded_run_matches_one_device(tmp_path):
    mesh = {"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2}
    sharded = train_and_evaluate(synthetic.small_config(**mesh, num_train_steps=4, eval_every=0),
                                 str(tmp_path / "eight"), synthetic.SyntheticTask())
    single = _spawn(tmp_path / "one", devices=1, num_train_steps=4, eval_every=0)
    out, _ = single.communicate(timeout=300)
    assert single.returncode == 0, out
    a, b = _train_records(tmp_path / "eight"), _train_records(tmp_path / "one")
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for step in a:
        np.testing.assert_allclose(a[step]["loss"], b[step]["loss"], rtol=1e-5)
    np.testing.assert_allclose(sharded["last"]["test"]["loss"],
                               json.loads(out.split("RESULTS ")[1])["last"]["test"]["loss"], rtol=1e-5)
    _check_provenance(tmp_path / "eight", {"data": 2, "fsdp": 2, "tensor": 2}, devices=8)
    _check_provenance(tmp_path / "one", {"data": 1, "fsdp": 1, "tensor": 1}, devices=1)
    for record in a.values():  # the new metrics, logged and finite
        for name in ("grad_norm", "param_norm_s4", "param_norm_rest", "update_ratio", "skipped"):
            assert np.isfinite(record[name]), (name, record)
        assert record["param_norm"] == pytest.approx(
            np.hypot(record["param_norm_s4"], record["param_norm_rest"]), rel=1e-5)
        assert record["param_norm_s4"] > 0 and record["param_norm_rest"] > 0
        assert 0 <= record["update_ratio"] < 1 and record["skipped"] == 0
    assert max(r["update_ratio"] for r in a.values()) > 0  # step 1's learning rate is 0 (warmup)


def _check_provenance(workdir, mesh, devices):
    """results.json and config.json say how the run was made."""
    import importlib.metadata
    results = json.loads((workdir / "results.json").read_text())
    made = results["provenance"]
    assert made == json.loads((workdir / "config.json").read_text())["provenance"]
    for package in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint"):
        assert made["versions"][package] == importlib.metadata.version(package)
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    assert made["git"]["commit"] == (commit or None)
    assert made["git"]["dirty"] in ((True, False) if commit else (None,))
    assert (made["device_count"], made["process_count"], made["mesh"]) == (devices, 1, mesh)
    assert made["device_kind"] == jax.devices()[0].device_kind
    assert len(made["config_hash"]) == 16
    assert results["wall_time_s"] == pytest.approx(sum(results["invocation_wall_time_s"]))


def test_parameters_are_really_sharded(caplog):
    from spade_jax.model import models
    from spade_jax.train import sharding
    from spade_jax.model.config import ModelConfig
    from spade_jax.train import state as state_lib
    # a vocabulary of 9: its table's 'vocab' axis cannot be split over tensor = 2
    cfg = synthetic.small_config(**{"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2,
                                    "model.vocab_size": 9})
    mesh = sharding.make_mesh(cfg.mesh)
    model = models.build_model(ModelConfig.from_config(cfg.model))
    tx, _ = optim.make_optimizer(cfg.optimizer, 10)
    state, _ = state_lib.create_sharded_state(
        model, tx, (np.ones((1, 8), np.int32),), 0, mesh, sharding.rules_from_config(cfg.logical_axis_rules))
    wi = state.params["encoder"]["layer_1"]["ffn"]["wi"]["kernel"]  # ('embed', 'mlp')
    assert wi.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    assert wi.addressable_shards[0].data.shape == (8, 16)  # (16, 32) over fsdp=2 x tensor=2
    mu = state.opt_state[1].inner_states["default"].inner_state[0].mu
    assert mu["encoder"]["layer_1"]["ffn"]["wi"]["kernel"].sharding.spec == wi.sharding.spec
    table = state.params["encoder"]["embed"]["embedding"]  # ('vocab', 'embed'), (9, 16)
    assert table.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp")
    said = [r.getMessage() for r in caplog.records if "replicated" in r.getMessage()]
    assert len(said) == 1 and "['embed']['embedding'] (9, 16)" in said[0], said


@pytest.mark.long  # tests/train/test_multiprocess.py kills every process of a 2-process run and restarts it, bitwise
def test_kill_9_and_restart_gives_identical_run(tmp_path):
    steps = dict(num_train_steps=8, checkpoint_every=2, eval_every=4)
    whole = _spawn(tmp_path / "whole", **steps)
    killed = _spawn(tmp_path / "killed", **steps)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:  # kill once step 5 (after the checkpoint at 4) has been logged
        if metrics.exists() and max(_train_records(tmp_path / "killed") or [0]) >= 5:
            break
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert max(_train_records(tmp_path / "killed")) < 8, "the run ended before it was killed"
    resumed = _spawn(tmp_path / "killed", **steps)
    for proc in (whole, resumed):
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    a, b = _train_records(tmp_path / "whole"), _train_records(tmp_path / "killed")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for step in a:
        assert a[step]["loss"] == b[step]["loss"], step  # bitwise on CPU
        assert a[step]["param_norm"] == b[step]["param_norm"], step
    for x, y in zip(_final_params(tmp_path / "whole"), _final_params(tmp_path / "killed")):
        np.testing.assert_array_equal(x, y)


@pytest.mark.long  # tests/train/test_multiprocess.py signals a 2-process run, which saves and resumes
def test_sigterm_saves_and_exits_then_resumes(tmp_path):
    """checkpoint_every=1: the SIGTERM arrives on a checkpoint step, which is saved once."""
    proc = _spawn(tmp_path, num_train_steps=200, checkpoint_every=1, eval_every=0)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (metrics.exists() and _train_records(tmp_path)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    stopped = json.loads(out.split("RESULTS ")[1])["preempted_at_step"]
    assert 1 <= stopped < 200
    assert ocp.CheckpointManager(str(tmp_path / "checkpoints")).latest_step() == stopped
    resumed = _spawn(tmp_path, num_train_steps=stopped + 2, checkpoint_every=1, eval_every=0)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    results = json.loads(out.split("RESULTS ")[1])
    assert results["steps"] == stopped + 2
    assert sorted(_train_records(tmp_path)) == list(range(1, stopped + 3))
    # the wall time of both invocations, summed; one metrics record per step and split
    first, second = results["invocation_wall_time_s"]
    assert first > 0 and second > 0
    assert results["wall_time_s"] == pytest.approx(first + second)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], r["split"]) for r in lines]
    assert len(keys) == len(set(keys))
    assert [k for k in keys if k[1] == "train"] == [(s, "train") for s in range(1, stopped + 3)]


def test_nan_stops_naming_the_step_or_is_skipped(tmp_path):
    with pytest.raises(FloatingPointError, match="at step 3"):
        train_and_evaluate(synthetic.small_config(), str(tmp_path / "stop"),
                           synthetic.SyntheticTask(nan_at=2))
    results = train_and_evaluate(synthetic.small_config(skip_nonfinite=True, eval_every=0),
                                 str(tmp_path / "skip"), synthetic.SyntheticTask(nan_at=2))
    records = _train_records(tmp_path / "skip")
    assert records[2]["skipped"] == 0 and records[3]["skipped"] == 1 and records[6]["skipped"] == 1
    assert records[3]["param_norm"] == records[2]["param_norm"]  # the update was skipped
    assert np.isfinite(results["last"]["test"]["loss"])
    assert records[6]["mfu"] > 0 and records[6]["tokens_per_s"] > 0
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "skip" / "tensorboard"))


def test_gradient_accumulation_equals_one_big_batch():
    """Two train steps with 4 micro-batches of 2 (one row per data-parallel device) equal two
    with one batch of 8: the engine's step, state and shardings as the loop builds them
    (spade_jax.train.job)."""
    from spade_jax.train import sharding
    from spade_jax.train import job as job_lib
    common = {"model.dropout": 0.0, "model.num_heads": 4, "mesh.data": 2, "mesh.fsdp": 1,
              "mesh.tensor": 4, "batch_size": 8}
    task = synthetic.SyntheticTask()
    stream = task.train_iterator(batch_size=8, seed=0, shard_index=0, shard_count=1)
    batches = [next(stream), next(stream)]
    records = []
    for accum in (1, 4):
        job = job_lib.build(synthetic.small_config(**common, grad_accum_steps=accum), task)
        state, step = job.create_state(), job.train_step()
        metrics = []
        with job.context():
            for batch in batches:
                state, m = step(state, sharding.place_batch(batch, job.mesh))
                metrics.append(jax.device_get(m))
        records.append(metrics)
    assert records[0][1]["update_ratio"] > 0  # step 1's learning rate is 0 (warmup)
    for big, accumulated in zip(*records):
        for name, rtol in (("loss", 1e-5), ("grad_norm", 1e-5), ("param_norm", 1e-6)):
            np.testing.assert_allclose(big[name], accumulated[name], rtol=rtol, err_msg=name)


def test_other_config_in_workdir_is_refused(tmp_path):
    train_and_evaluate(synthetic.small_config(num_train_steps=2, eval_every=0), str(tmp_path),
                       synthetic.SyntheticTask())
    wider = synthetic.small_config(**{"model.d_ff": 64}, num_train_steps=4, eval_every=0)
    with pytest.raises(ValueError, match=r"another model config \(fields \['d_ff'\]"):
        train_and_evaluate(wider, str(tmp_path), synthetic.SyntheticTask())
    os.remove(tmp_path / "config.json")  # even without the config record, shapes are checked
    with pytest.raises(checkpoint.CheckpointMismatchError, match="different model config"):
        train_and_evaluate(wider, str(tmp_path), synthetic.SyntheticTask())
    assert ocp.CheckpointManager(str(tmp_path / "checkpoints")).latest_step() == 2  # untouched


def test_parameter_groups_and_freeze_ssm(tmp_path):
    from jax.tree_util import DictKey
    path = lambda *names: tuple(DictKey(n) for n in names)
    assert optim.parameter_group(path("encoder", "layer_0", "mixer", "s4", "A_re")) == "ssm"
    assert optim.parameter_group(path("encoder", "layer_0", "mixer", "s4", "C")) == "default"
    assert optim.parameter_group(path("encoder", "layer_0", "norm_ffn", "scale")) == "no_decay"
    assert optim.parameter_group(path("encoder", "layer_0", "mixer", "s4", "C"), True) == "frozen"
    train_and_evaluate(synthetic.small_config(**{"optimizer.freeze_ssm": True}, eval_every=0,
                                              num_train_steps=2, checkpoint_every=1, keep_checkpoints=3),
                       str(tmp_path), synthetic.SyntheticTask())
    manager = ocp.CheckpointManager(str(tmp_path / "checkpoints"))
    first, last = (manager.restore(s, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
                   ["state"]["params"]["encoder"]["layer_0"] for s in (1, 2))
    for name, value in first["mixer"]["s4"].items():
        np.testing.assert_array_equal(value, last["mixer"]["s4"][name], err_msg=name)
    assert not np.array_equal(first["ffn"]["wi"]["kernel"], last["ffn"]["wi"]["kernel"])


@pytest.mark.parametrize("overrides,match", [
    ({"batch_size": 6}, "config.batch_size"),
    ({"mesh.data": 3}, "config.mesh"),
    ({"mesh.pipeline": 2}, "unknown axes"),
    ({"optimizer.name": "lion"}, "config.optimizer.name"),
    ({"optimizer.schedule": "step"}, "config.optimizer.schedule"),
    ({"optimizer.learning_rte": 0.1}, r"unknown config.optimizer field\(s\) \['learning_rte'\]"),
    ({"model.num_heads": 3}, "model.d_model"),
])
def test_bad_config_is_named_before_training(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        train_and_evaluate(synthetic.small_config(**overrides), str(tmp_path), synthetic.SyntheticTask())
    assert not (tmp_path / "checkpoints").exists()
