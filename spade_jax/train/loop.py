"""train_and_evaluate(config, workdir, task): the one training loop for every task.

A task is a small object (see `Task`) giving data iterators, the model inputs of a batch and the
per-batch metric sums. The loop builds the mesh and a sharded TrainState, resumes from the latest
checkpoint in `workdir` (model, optimiser, step and data position), trains with periodic logging,
validation and checkpoints, saves on SIGTERM, and ends with the test score at the best-validation
checkpoint and at the last one, written to WORKDIR/results.json with how the run was made
(spade_jax.train.provenance) and its wall time: the total of every invocation of the run (each
kept with the checkpoints it saved, so it survives a resume) and the list per invocation.

Before the first step, every input is checked: the config (spade_jax.train.defaults.validate,
spade_jax.model.config.ModelConfig), the workdir (spade_jax.train.workdir: a run of another model
config is refused before anything is written there; one run at a time, spade_jax.runtime.lock) and the
data of every split the run uses (the tasks read and check a split when its iterator is made).
A model whose parameters stop being finite, or that skips too many updates under
skip_nonfinite, stops with a DivergedError (spade_jax.train.divergence).
"""
import contextlib
import hashlib
import json
import time
from typing import Protocol

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from spade_jax.model import families
from spade_jax.runtime import lock, paths, process
from spade_jax.train import sharding
from spade_jax.train import checkpoint, job as job_lib, metrics as metrics_lib, provenance
from spade_jax.train import workdir as workdir_lib
from spade_jax.train.divergence import Divergence
from spade_jax.train.evaluate import Evaluator, check_splits


class Task(Protocol):
    """What a task gives the engine. Batches are dicts of host-local numpy arrays."""

    def train_iterator(self, *, batch_size: int, seed: int, shard_index: int, shard_count: int):
        """An endless iterator of this host's batch_size rows of each global batch, with
        get_state() -> JSON-able and set_state(state). The state must be the same on every host
        and mean the same for any shard_count (e.g. the number of batches taken), so a
        checkpoint resumes on another number of hosts; the loop checks that the hosts agree."""

    def eval_iterator(self, split: str, *, batch_size: int, shard_index: int, shard_count: int):
        """A finite iterable of batches of exactly batch_size rows (padding rows weigh 0)."""

    def batch_spec(self, rows: int) -> dict:
        """{field: jax.ShapeDtypeStruct} of a batch of `rows`: what the iterators yield, known
        without reading data (the state and the steps are built, and compiled ahead of time
        by spade_jax.aot, from it)."""

    def model_inputs(self, batch) -> tuple:
        """The positional inputs of model.apply, e.g. (batch['inputs'],)."""

    def metrics(self, outputs, batch) -> dict:
        """{name: (sum, count)} as jax scalars; must contain 'loss' (what is minimised: its
        sum / count). 'accuracy', if present, picks the best checkpoint (else -loss); a
        'token_loss' (mean NLL per token) adds 'perplexity' = exp(token_loss) to the logs."""

    # Optional: sequences(batch) -> tuple of the (batch, length) token arrays the model encodes,
    # for tokens/s and FLOPs (default: model_inputs(batch), which may also hold masks, targets);
    # check_model(model_config) -> None, raising a UserError when the data read so far does not
    # fit the model's sizes (labels, vocabulary), called before the first step.


def train_and_evaluate(config, workdir: str, task: Task) -> dict:
    """Trains `config.model` on `task` in `workdir` (resuming if it holds a checkpoint) and
    returns the results dict that is also written to WORKDIR/results.json; a run stopped by a
    preemption notice returns {'preempted_at_step': step} after saving, one stopped by Ctrl-C
    {'interrupted_at_step': step}.

    Call `process.start_process()` first (it joins the other hosts of a multi-host job)."""
    with contextlib.ExitStack() as stack:  # holds the workdir lock
        run = _Run(config, workdir, task, stack)
        stopped = run.train()
        if stopped in ("preempted", "interrupted"):
            run.close()
            return {f"{stopped}_at_step": run.step}
        return run.finish(stopped_on_budget=stopped == "budget")


class _Run:
    """One invocation of a run: what is built before the first step, then the loop's state."""

    def __init__(self, config, workdir, task, stack):
        self.started = time.perf_counter()
        self.config, self.workdir, self.task = config, workdir, task
        self.job = job = job_lib.build(config, task)  # checks the config first
        self.engine = engine = job.engine
        self.model_cfg, self.mesh, self.rules = job.model_cfg, job.mesh, job.rules
        workdir_lib.check(workdir, config)
        checkpoint.check_folders(workdir)
        checkpoint.check_space(workdir, job.abstract_state)
        self.shard = dict(shard_index=jax.process_index(), shard_count=jax.process_count())
        self.train_iter = task.train_iterator(batch_size=engine.batch_size // jax.process_count(),
                                              seed=engine.seed, **self.shard)
        check_splits(task, engine.eval_batch // jax.process_count(), self.shard)
        start_position = self.train_iter.get_state()
        self.example = next(self.train_iter)
        self.train_iter.set_state(start_position)
        job_lib.check_batch(task, self.example, "the first training batch")
        if hasattr(task, "check_model"):  # labels and token ids against the model's sizes
            task.check_model(self.model_cfg)
        self.state = job.create_state()
        lock.hold(workdir, stack)  # before the first thing is written in the workdir
        self.ckpts = checkpoint.Checkpoints(workdir, engine.keep_checkpoints,
                                            engine.async_checkpoints)
        self.abstract = job.abstract_state
        self.best_score, self.step, self.earlier_wall_s = -np.inf, 0, []
        self._restore()
        self.provenance = provenance.collect(config, self.mesh)
        workdir_lib.record(workdir, config, self.provenance)  # the checkpoint is known to fit
        self._compile()
        self.writer = metrics_lib.MetricsWriter(workdir)
        self.console = metrics_lib.Console(engine.num_train_steps, self.step,
                                           engine.show_steps)

    def _restore(self) -> None:
        restored = self.ckpts.restore(self.ckpts.latest, self.abstract)
        if restored is None:
            return
        self.state, data_state, _ = restored
        self.step = int(self.state.step)
        self.train_iter.set_state(data_state["iterator"])
        self.best_score = data_state.get("best_score", -np.inf)
        self.earlier_wall_s = list(data_state.get("wall_time_s", []))
        if jax.process_index() == 0:
            print(f"resuming from the checkpoint at step {self.step} in {self.workdir}",
                  flush=True)

    def _compile(self) -> None:
        """The train step compiled ahead of the loop, so that a step that cannot fit in memory
        stops here with a clear message instead of being killed mid-step (not at all when the
        run restored its last step: rerunning a finished run only reports); the eval step."""
        self.train_step = None
        if self.step < self.engine.num_train_steps:
            self.train_step = self.job.lower_train_step(
                self.state, sharding.place_batch(self.example, self.mesh)).compile()
            process.check_step_memory(self.train_step, "the train step", self.config,
                                      process.available_memory())
        self.evaluate = Evaluator(self.job, shard=self.shard,
                                  batch_size=self.engine.eval_batch // jax.process_count(),
                                  max_batches=self.engine.max_eval_batches)

    def _train_log(self) -> metrics_lib.TrainLog:
        engine, example = self.engine, self.example
        inputs = (self.task.sequences(example) if hasattr(self.task, "sequences")
                  else self.task.model_inputs(example))
        rows = sum(len(x) for x in inputs) * jax.process_count()
        return metrics_lib.TrainLog(
            self.writer, self.console, learning_rate=self.job.learning_rate,
            log_every=engine.log_every, num_steps=engine.num_train_steps, start_step=self.step,
            tokens_per_batch=sum(np.size(x) for x in inputs) * jax.process_count(),
            step_flops=families.train_step_flops(self.model_cfg, inputs[0].shape[1], rows),
            peak_flops=(engine.peak_flops or metrics_lib.measure_peak_flops())
            * jax.device_count())

    def train(self) -> str:
        """Steps until the end: 'done', 'preempted' (saved) or 'budget' (config.max_wall_s)."""
        engine, log = self.engine, self._train_log()
        divergence = Divergence(engine, self.workdir, self.ckpts)
        profile = engine.profile_steps
        stopped = "done"
        with process.Preemption() as preemption:
            while self.step < engine.num_train_steps:
                if profile and self.step == profile[0]:
                    jax.profiler.start_trace(str(paths.workdir_path(self.workdir) / "profile"))
                batch = sharding.place_batch(next(self.train_iter), self.mesh)
                self.state, metrics = self.train_step(self.state, batch)
                self.step += 1
                step, metrics = self.step, jax.device_get(metrics)
                if profile and step == profile[1]:
                    jax.profiler.stop_trace()
                divergence.check(step, metrics)  # before anything of this step is saved
                log.step(step, metrics)
                if engine.eval_every and step % engine.eval_every == 0 \
                        and step < engine.num_train_steps:
                    self.validate()
                stop = preemption.reached(step)  # the same step on every process
                if stop or engine.checkpoint_every and step % engine.checkpoint_every == 0:
                    self.save()
                if stop:
                    stopped = "interrupted" if preemption.interrupted else "preempted"
                    logging.warning("%s: saved a checkpoint at step %d in %s; exiting",
                                    "Ctrl-C" if preemption.interrupted else "SIGTERM", step,
                                    self.workdir)
                    break
                if process.past_budget(engine.max_wall_s, self.started):
                    logging.warning("config.max_wall_s (%g s) reached at step %d: evaluating and "
                                    "reporting", engine.max_wall_s, step)
                    stopped = "budget"
                    break
        self.console.close()
        return stopped

    def data_state(self) -> dict:
        """What a checkpoint keeps beside the TrainState: the training iterator's position
        (checked to be the same on every host), the best validation score so far and the wall
        time of each invocation up to this one (process 0's clock)."""
        position = self.train_iter.get_state()
        if process.multi_process():  # one position for all hosts (see Task.train_iterator)
            digest = hashlib.sha256(json.dumps(position, sort_keys=True).encode()).digest()
            multihost_utils.assert_equal(np.frombuffer(digest, np.uint8),
                                         f"the hosts' training iterators disagree at step "
                                         f"{self.step}: {position}")
        return {"iterator": position, "best_score": float(self.best_score),
                "wall_time_s": self.wall_time_s()}

    def wall_time_s(self) -> list:
        """Seconds of each invocation of the run so far, this one last."""
        return self.earlier_wall_s + [time.perf_counter() - self.started]

    def save(self) -> None:
        self.ckpts.save(self.ckpts.latest, self.step, self.state, self.data_state())

    def validate(self) -> None:
        """Validation metrics (with the seconds since this invocation started), logged and
        shown; saves the best checkpoint (score = accuracy, else -loss)."""
        values = dict(self.evaluate("validation", self.state.params),
                      elapsed_s=time.perf_counter() - self.started)
        self.console.evaluation(self.step, "validation", values)
        self.writer.write(self.step, "validation", values)
        score = values.get("accuracy", -values.get("loss", np.inf))
        if score > self.best_score:
            self.best_score = score
            self.ckpts.save(self.ckpts.best, self.step, self.state, self.data_state())

    def finish(self, stopped_on_budget: bool) -> dict:
        """The last validation and checkpoint, then the test scores at the last and the best
        checkpoint: the results, also in WORKDIR/results.json (process 0)."""
        self.validate()
        if self.ckpts.latest.latest_step() != self.step:
            self.save()
        self.ckpts.wait()
        params = self.state.params
        results = {"steps": self.step,
                   "parameters": int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params))),
                   "last": {"test": self.evaluate("test", params)}}
        best = self.ckpts.restore(self.ckpts.best, self.abstract)
        if best is not None:
            results["best"] = {"step": best[2], "validation_score": self.best_score,
                               "test": self.evaluate("test", best[0].params)}
        invocations = self.wall_time_s()
        results.update(wall_time_s=sum(invocations), invocation_wall_time_s=invocations,
                       provenance=self.provenance)
        if stopped_on_budget:
            results["stopped_on_budget"] = True
        self.writer.write(self.step, "test_last", results["last"]["test"])
        self.close()
        if jax.process_index() == 0:
            paths.write_json(paths.workdir_path(self.workdir) / "results.json", results)
        return results

    def close(self) -> None:
        self.ckpts.wait()
        self.ckpts.close()
        self.writer.close()
