"""train_and_evaluate(config, workdir, task): the one training loop for every task.

A task is a small object (see `Task`) giving data iterators, the model inputs of a batch and the
per-batch metric sums. The loop builds the mesh and a sharded TrainState, resumes from the latest
checkpoint in `workdir` (model, optimiser, step and data position), trains with periodic logging,
validation and checkpoints, saves on SIGTERM, and ends with the test score at the best-validation
checkpoint and at the last one, written to WORKDIR/results.json.

Before the first step, every input is checked: the config's fields, the workdir (a run of
another model config is refused before anything is written there; one run at a time, see
spade_jax.lock) and the data of every split the run uses (the tasks read and check a split when
its iterator is made). A model whose parameters stop being finite, or that skips too many
updates under skip_nonfinite, stops with a DivergedError naming the step and the last good
checkpoint.
"""
import collections
import contextlib
import hashlib
import json
import time
from typing import Protocol

import flax.linen as nn
import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from spade_jax import flops, lock, models, paths, runtime, sharding
from spade_jax.config import ModelConfig
from spade_jax.errors import ConfigError, UserError, closest
from spade_jax.train import checkpoint, metrics as metrics_lib, optim, state as state_lib, steps


class Task(Protocol):
    """What a task gives the engine. Batches are dicts of host-local numpy arrays."""

    def train_iterator(self, *, batch_size: int, seed: int, shard_index: int, shard_count: int):
        """An endless iterator of this host's batch_size rows of each global batch, with
        get_state() -> JSON-able and set_state(state). The state must be the same on every host
        and mean the same for any shard_count (e.g. the number of batches taken), so a
        checkpoint resumes on another number of hosts; the loop checks that the hosts agree."""

    def eval_iterator(self, split: str, *, batch_size: int, shard_index: int, shard_count: int):
        """A finite iterable of batches of exactly batch_size rows (padding rows weigh 0)."""

    def model_inputs(self, batch) -> tuple:
        """The positional inputs of model.apply, e.g. (batch['inputs'],)."""

    def metrics(self, outputs, batch) -> dict:
        """{name: (sum, count)} as jax scalars; must contain 'loss' (what is minimised: its
        sum / count). 'accuracy', if present, picks the best checkpoint (else -loss); a
        'token_loss' (mean NLL per token) adds 'perplexity' = exp(token_loss) to the logs."""

    # Optional: sequences(batch) -> tuple of the (batch, length) token arrays the model encodes,
    # for tokens/s and FLOPs (default: model_inputs(batch), which may also hold masks, targets).


class DivergedError(UserError, FloatingPointError):
    """Training diverged (non-finite loss or parameters); the message names the step, the last
    good checkpoint and what to change."""


def _check_known_fields(config):
    """Typos in the engine's sections (optimizer, mesh) would otherwise be silently ignored."""
    from spade_jax.train.defaults import default_config
    defaults = default_config()
    for section in ("optimizer", "mesh"):
        unknown = sorted(set(config[section]) - set(defaults[section]))
        if unknown and section == "optimizer":
            raise ConfigError(f"unknown config.optimizer field(s) {unknown}"
                              f"{closest(unknown[0], defaults.optimizer)}")
        if unknown:
            raise ConfigError(f"config.mesh has unknown axes {unknown}; axes are "
                              f"{sorted(defaults.mesh)}")


def _check_config(config, mesh):
    """Errors that name the config field, before anything is compiled."""
    dp = sharding.data_parallel_size(mesh)
    accum = int(config.grad_accum_steps)
    if accum < 1:
        raise ConfigError(f"config.grad_accum_steps must be >= 1, got {accum}")
    # dp counts the devices of every host, so a multi-host batch needs no extra factor for the
    # processes: each host reads batch_size / process_count rows for its own devices.
    if config.batch_size % (dp * accum) or config.batch_size % jax.process_count():
        raise ConfigError(
            f"config.batch_size ({config.batch_size}) must be divisible by grad_accum_steps "
            f"({accum}) x data-parallel size ({dp} = mesh data x fsdp, all hosts' devices) and "
            f"by the number of processes ({jax.process_count()})")
    for name, low in (("num_train_steps", 1), ("keep_checkpoints", 1), ("skip_window", 1),
                      ("log_every", 0), ("eval_every", 0), ("checkpoint_every", 0),
                      ("eval_batch_size", 0), ("max_eval_batches", 0), ("max_wall_s", 0)):
        if config[name] < low:
            raise ConfigError(f"config.{name} must be >= {low}, got {config[name]}")
    eval_batch = config.eval_batch_size or config.batch_size
    if eval_batch % dp or eval_batch % jax.process_count():
        raise ConfigError(f"config.eval_batch_size ({eval_batch}) must be divisible by the "
                          f"data-parallel size ({dp}) and by the number of processes "
                          f"({jax.process_count()})")
    if not 0 <= config.seed < 2**32:
        raise ConfigError(f"config.seed must be in [0, 2**32), got {config.seed}")
    profile = tuple(config.profile_steps or ())
    if profile and not (len(profile) == 2 and 0 <= profile[0] < profile[1]):
        raise ConfigError(f"config.profile_steps must be () or (first, last) with 0 <= first < "
                          f"last, got {profile}")
    if not 0.0 <= config.max_skipped_fraction <= 1.0:
        raise ConfigError(f"config.max_skipped_fraction must be in [0, 1], got "
                          f"{config.max_skipped_fraction}")


def _check_workdir(workdir, config, write: bool = True):
    """Refuses a workdir that holds a run of another model config (nothing is overwritten);
    then (`write`, process 0) records this config in WORKDIR/config.json."""
    path = paths.workdir_path(workdir) / "config.json"
    current = json.loads(config.to_json_best_effort())
    if path.exists():
        previous = paths.read_json(path, expect=dict).get("model", {})
        if previous != current["model"]:
            diff = sorted(k for k in set(previous) | set(current["model"])
                          if previous.get(k) != current["model"].get(k))
            raise ConfigError(f"{workdir} holds a run with another model config (fields {diff} "
                              f"differ, see {path}); use a new --workdir")
    if write and jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.write_json(path, current)


def _lock_workdir(workdir, stack):
    """Takes the workdir's lock on process 0 until `stack` (a contextlib.ExitStack) closes;
    when another run holds it, every process raises (process 0 the PathError naming it)."""
    error = None
    if jax.process_index() == 0:
        try:
            stack.enter_context(lock.WorkdirLock(workdir))
        except UserError as e:
            error = e
    if runtime.multi_process():
        from jax.experimental import multihost_utils
        failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
        if failed and error is None:
            error = ConfigError(f"{workdir}: process 0 could not lock it (see its message)")
    if error is not None:
        raise error


def _check_splits(task, batch_size, shard):
    """Reads the first batch of each evaluation split, so that a task reads (and checks) every
    split the run uses before the first step, not after training."""
    for split in ("validation", "test"):
        next(iter(task.eval_iterator(split, batch_size=batch_size, **shard)), None)


class _Divergence:
    """The guard on a diverging model: non-finite loss or gradients (unless skip_nonfinite),
    non-finite parameters, or more than max_skipped_fraction of the last skip_window updates
    skipped."""

    def __init__(self, config, workdir, ckpts):
        self.config, self.workdir, self.ckpts = config, workdir, ckpts
        self.recent = collections.deque(maxlen=int(config.skip_window))

    def check(self, step, metrics) -> None:
        cfg, finite = self.config, bool(metrics["finite"])
        latest = self.ckpts.latest.latest_step()
        last = (f"no checkpoint was saved yet in {self.workdir}" if latest is None else
                f"the last good checkpoint is step {latest} in {self.workdir}")
        if not finite and not cfg.skip_nonfinite:
            raise DivergedError(
                f"non-finite loss or gradients at step {step} (loss {metrics['loss']}, "
                f"gradient norm {metrics['grad_norm']}); {last}. Lower the learning rate, or set "
                f"config.skip_nonfinite=True to skip such updates")
        if not np.isfinite(metrics["param_norm"]):
            raise DivergedError(
                f"the parameters are no longer finite after step {step} (an update overflowed; "
                f"gradient norm {metrics['grad_norm']}); {last}. Lower "
                f"config.optimizer.learning_rate or config.optimizer.clip_norm")
        self.recent.append(not finite)
        skipped = sum(self.recent)
        if skipped > cfg.max_skipped_fraction * self.recent.maxlen:
            raise DivergedError(
                f"the model has diverged: {skipped} of the last {len(self.recent)} updates (to "
                f"step {step}) had a non-finite loss or gradients and were skipped, more than "
                f"config.max_skipped_fraction = {cfg.max_skipped_fraction} of "
                f"config.skip_window = {cfg.skip_window}; {last}. Lower the learning rate or "
                f"check the data")


def _abstract(state, shardings):
    return jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)


def train_and_evaluate(config, workdir: str, task: Task) -> dict:
    """Trains `config.model` on `task` in `workdir` (resuming if it holds a checkpoint) and
    returns the results dict that is also written to WORKDIR/results.json.

    Call `runtime.start_process()` first (it joins the other hosts of a multi-host job)."""
    with contextlib.ExitStack() as stack:  # holds the workdir lock
        return _train_and_evaluate(config, workdir, task, stack)


def _train_and_evaluate(config, workdir, task, stack):
    wall_start = time.perf_counter()
    _check_known_fields(config)
    model_cfg = ModelConfig.from_config(config.model)
    mesh = sharding.make_mesh(config.mesh)
    rules = sharding.rules_from_config(config.logical_axis_rules)
    _check_config(config, mesh)
    _check_workdir(workdir, config, write=False)
    model = models.build_model(model_cfg)
    tx, learning_rate = optim.make_optimizer(config.optimizer, config.num_train_steps)
    host_batch = config.batch_size // jax.process_count()
    eval_batch = (config.eval_batch_size or config.batch_size) // jax.process_count()
    shard = dict(shard_index=jax.process_index(), shard_count=jax.process_count())
    train_iter = task.train_iterator(batch_size=host_batch, seed=config.seed, **shard)
    _check_splits(task, eval_batch, shard)
    start_position = train_iter.get_state()
    example = next(train_iter)
    train_iter.set_state(start_position)
    batch_shardings = {k: sharding.batch_sharding(mesh, np.ndim(v)) for k, v in example.items()}

    state, state_shardings = state_lib.create_sharded_state(
        model, tx, tuple(x[:1] for x in task.model_inputs(example)), config.seed, mesh, rules)
    _lock_workdir(workdir, stack)  # before the first thing is written in the workdir
    ckpts = checkpoint.Checkpoints(workdir, config.keep_checkpoints, config.async_checkpoints)
    abstract = _abstract(state, state_shardings)
    best_score = -np.inf
    restored = ckpts.restore(ckpts.latest, abstract)
    if restored is not None:
        state, data_state, _ = restored
        train_iter.set_state(data_state["iterator"])
        best_score = data_state.get("best_score", -np.inf)
        if jax.process_index() == 0:
            print(f"resuming from the checkpoint at step {int(state.step)} in {workdir}", flush=True)
    _check_workdir(workdir, config)  # nothing is written before the checkpoint is known to fit

    with nn.logical_axis_rules(rules):
        # Compiled ahead of the loop, so that a step that cannot fit in memory stops here with
        # a clear message instead of being killed mid-step.
        train_step = steps.jit_train_step(model, tx, task, config, state_shardings,
                                          batch_shardings).lower(
            state, sharding.place_batch(example, mesh)).compile()
        runtime.check_step_memory(train_step, "the train step", config,
                                  runtime.available_memory())
        eval_step = jax.jit(steps.make_eval_step(model, task),
                            in_shardings=(state_shardings.params, batch_shardings))

    def evaluate(split, params):
        totals = {}
        batches = task.eval_iterator(split, batch_size=eval_batch, **shard)
        for i, batch in enumerate(batches):
            if config.max_eval_batches and i >= config.max_eval_batches:
                break
            with nn.logical_axis_rules(rules):
                sums = eval_step(params, sharding.place_batch(batch, mesh))
            for name, (s, c) in jax.device_get(sums).items():
                prev = totals.get(name, (0.0, 0.0))
                totals[name] = (prev[0] + float(s), prev[1] + float(c))
        values = _with_perplexity({name: s / max(c, 1.0) for name, (s, c) in totals.items()})
        values["scored"] = totals["loss"][1]  # examples (tokens for an LM) the loss counted
        return values

    def data_state(score):
        position = train_iter.get_state()
        if runtime.multi_process():  # one position for all hosts (see Task.train_iterator)
            digest = hashlib.sha256(json.dumps(position, sort_keys=True).encode()).digest()
            multihost_utils.assert_equal(np.frombuffer(digest, np.uint8),
                                         f"the hosts' training iterators disagree at step "
                                         f"{int(state.step)}: {position}")
        return {"iterator": position, "best_score": float(score)}

    writer = metrics_lib.MetricsWriter(workdir)
    step = int(state.step)
    console = metrics_lib.Console(config.num_train_steps, step, config.progress_bar)
    inputs = (task.sequences(example) if hasattr(task, "sequences")
              else task.model_inputs(example))
    tokens_per_batch = sum(np.size(x) for x in inputs) * jax.process_count()
    step_flops = flops.train_step_flops(model_cfg, inputs[0].shape[1],
                                        sum(len(x) for x in inputs) * jax.process_count())
    peak = config.peak_flops or metrics_lib.measure_peak_flops()
    profile = tuple(config.profile_steps) if config.profile_steps else None
    start_step = last_step = step
    last_time = time.perf_counter()
    preempted = stopped_on_budget = False
    divergence = _Divergence(config, workdir, ckpts)
    with runtime.Preemption() as preemption:
        while step < config.num_train_steps:
            if profile and step == profile[0]:
                jax.profiler.start_trace(str(paths.workdir_path(workdir) / "profile"))
            batch = sharding.place_batch(next(train_iter), mesh)
            with nn.logical_axis_rules(rules):
                state, metrics = train_step(state, batch)
            step += 1
            metrics = jax.device_get(metrics)
            if profile and step == profile[1]:
                jax.profiler.stop_trace()
            divergence.check(step, metrics)  # before anything of this step is saved
            if step == start_step + 1:  # steps/s leaves out the first step (compilation)
                last_time, last_step = time.perf_counter(), step
            console.step(float(metrics["loss"]))
            if config.log_every and step % config.log_every == 0 or step == config.num_train_steps:
                now = time.perf_counter()
                rate = (step - last_step) / max(now - last_time, 1e-9) if step > last_step else 0.0
                last_time, last_step = now, step
                record = _with_perplexity({k: v for k, v in metrics.items() if k != "finite"})
                record.update(learning_rate=float(learning_rate(step - 1)), steps_per_s=rate,
                              tokens_per_s=rate * tokens_per_batch,
                              mfu=step_flops * rate / (peak * jax.device_count()))
                writer.write(step, "train", record)
                console.log(step, record)
            if config.eval_every and step % config.eval_every == 0 and step < config.num_train_steps:
                best_score = _validate(evaluate, state, step, best_score, writer, console, ckpts,
                                       data_state, time.perf_counter() - wall_start)
            stop = preemption.reached(step)  # the same step on every process
            if stop or config.checkpoint_every and step % config.checkpoint_every == 0:
                ckpts.save(ckpts.latest, step, state, data_state(best_score))
            if stop:
                logging.warning("SIGTERM: saved a checkpoint at step %d in %s; exiting", step, workdir)
                preempted = True
                break
            if runtime.past_budget(config.max_wall_s, wall_start):
                logging.warning("config.max_wall_s (%g s) reached at step %d: evaluating and "
                                "reporting", config.max_wall_s, step)
                stopped_on_budget = True
                break
    console.close()
    if preempted:
        ckpts.wait()
        ckpts.close()
        writer.close()
        return {"preempted_at_step": step}

    best_score = _validate(evaluate, state, step, best_score, writer, console, ckpts, data_state,
                           time.perf_counter() - wall_start)
    if ckpts.latest.latest_step() != step:
        ckpts.save(ckpts.latest, step, state, data_state(best_score))
    ckpts.wait()
    results = {"steps": step,
               "parameters": int(sum(np.size(x) for x in jax.tree_util.tree_leaves(state.params))),
               "last": {"test": evaluate("test", state.params)}}
    best = ckpts.restore(ckpts.best, abstract)
    if best is not None:
        results["best"] = {"step": best[2], "validation_score": best_score,
                           "test": evaluate("test", best[0].params)}
    results["wall_time_s"] = time.perf_counter() - wall_start  # this invocation only
    if stopped_on_budget:
        results["stopped_on_budget"] = True
    writer.write(step, "test_last", results["last"]["test"])
    ckpts.close()
    writer.close()
    if jax.process_index() == 0:
        paths.write_json(paths.workdir_path(workdir) / "results.json", results)
    return results


def _with_perplexity(values: dict) -> dict:
    """Adds exp(loss) as 'perplexity' when the task reports a per-token loss ('token_loss')."""
    if "token_loss" in values:
        values["perplexity"] = float(np.exp(min(float(values["token_loss"]), 50.0)))
    return values


def _validate(evaluate, state, step, best_score, writer, console, ckpts, data_state, elapsed_s):
    """Validation metrics (with the seconds since this invocation started), logged and shown;
    saves the best checkpoint (score = accuracy, else -loss)."""
    values = dict(evaluate("validation", state.params), elapsed_s=elapsed_s)
    console.evaluation(step, "validation", values)
    writer.write(step, "validation", values)
    score = values.get("accuracy", -values.get("loss", np.inf))
    if score > best_score:
        best_score = score
        ckpts.save(ckpts.best, step, state, data_state(best_score))
    return best_score
