"""The job a config describes, built once: what the training loop runs and what
`python -m spade_jax.aot` compiles for a TPU topology, from the same code.

    job = build(config, task)                      # this process's devices
    job = build(config, task, devices=tpu_devices, process_count=1)   # abstract TPU devices
    state = job.create_state()                     # real arrays, already sharded
    compiled = job.lower_train_step(job.abstract_state, job.batch()).compile()

`build` checks the config (spade_jax.train.defaults.validate, spade_jax.model.config.ModelConfig),
makes the mesh over `devices`, the model and the optimiser, and derives the state's shardings
and abstract shapes from the task's batch layout (`Task.batch_spec`), so nothing is read and
nothing is allocated until `create_state`.
"""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from spade_jax.model import models, platform
from spade_jax.train import sharding
from spade_jax.model.config import ModelConfig
from spade_jax.runtime.errors import ConfigError, DataError
from spade_jax.train import defaults, optim, state as state_lib, steps


@dataclasses.dataclass(frozen=True)
class Job:
    """A config built for a set of devices (see `build`)."""

    config: Any  # the experiment's ConfigDict
    task: Any  # spade_jax.train.loop.Task
    engine: defaults.Engine
    model_cfg: ModelConfig
    mesh: jax.sharding.Mesh
    model: Any  # flax.linen.Module
    tx: Any  # optax.GradientTransformation
    learning_rate: Callable  # step -> learning rate (the schedule, for the logs)
    init: Callable  # () -> TrainState, jitted with the state's shardings as outputs
    abstract_state: Any  # the TrainState as jax.ShapeDtypeStructs with their shardings

    @property
    def rules(self) -> tuple:
        return self.engine.logical_axis_rules

    @property
    def state_shardings(self):
        return jax.tree_util.tree_map(lambda x: x.sharding, self.abstract_state)

    def context(self):
        """The context every step of this job is traced and called in (mesh and rules set)."""
        return sharding.model_context(self.mesh, self.rules)

    def batch(self, rows: int | None = None) -> dict:
        """A global batch of `rows` (default: config.batch_size) as jax.ShapeDtypeStructs, split
        over the data-parallel axes as `place_batch` places real batches."""
        rows = self.engine.batch_size if rows is None else rows
        return {name: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                           sharding=sharding.batch_sharding(self.mesh, s.ndim))
                for name, s in self.task.batch_spec(rows).items()}

    def batch_shardings(self) -> dict:
        return {name: s.sharding for name, s in self.batch(1).items()}

    def create_state(self):
        """The initial TrainState, created on the devices already sharded."""
        return self.init()

    def train_step(self):
        """The jitted train step (state donated): (state, batch) -> (state, metrics)."""
        return steps.jit_train_step(self.model, self.tx, self.task, self.engine,
                                    self.state_shardings, self.batch_shardings())

    def lower_train_step(self, state, batch):
        """The train step lowered for `state` and `batch` (arrays or ShapeDtypeStructs)."""
        with self.context():
            return self.train_step().lower(state, batch)

    def eval_step(self):
        """The jitted eval step: (params, batch) -> {name: (sum, count)}."""
        return jax.jit(steps.make_eval_step(self.model, self.task),
                       in_shardings=(self.state_shardings.params, self.batch_shardings()))

    def lower_eval_step(self, params, batch):
        with self.context():
            return self.eval_step().lower(params, batch)


def build(config, task, devices=None, process_count: int | None = None) -> Job:
    """The job of `config` on `devices` (default: all of this process's JAX devices) for a run
    of `process_count` processes (default: this run's). Raises ConfigError for a bad config
    (before anything is built)."""
    devices = jax.devices() if devices is None else list(devices)
    process_count = jax.process_count() if process_count is None else process_count
    engine = defaults.validate(config, len(devices), process_count)
    model_cfg = ModelConfig.from_config(config.model)
    mesh = sharding.make_mesh(dataclasses.asdict(engine.mesh), devices)
    model = models.build_model(model_cfg)
    platform.check_kernel(model_cfg.attention_impl, devices[0].platform)
    tx, learning_rate = optim.make_optimizer(engine.optimizer, engine.num_train_steps)
    # model.init sees one row per data-parallel device, so that work split over the batch
    # shards (the S4 convolution, splash attention) is split at initialisation as in the steps
    rows = sharding.data_parallel_size(mesh)
    example = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype)
                    for x in task.model_inputs(_zeros(task.batch_spec(rows))))
    init, abstract = state_lib.sharded_init(model, tx, example, engine.seed, mesh,
                                            engine.logical_axis_rules)
    return Job(config=config, task=task, engine=engine, model_cfg=model_cfg, mesh=mesh,
               model=model, tx=tx, learning_rate=learning_rate, init=init,
               abstract_state=abstract)


# (task names, from_config): how a task package (lra, lm) builds the Task of a config without
# reading data; registered when the package's configs module is imported (every config file
# imports it), so that `python -m spade_jax.aot` can compile any config's job.
_TASKS = []


def register_task(names, from_config: Callable) -> None:
    """Registers `from_config(config) -> Task` for the configs whose config.task is in `names`
    (a collection, checked at each lookup: a registry dict keeps later additions): a Task whose
    batch_spec, model_inputs and metrics work without its data (nothing is read until an
    iterator is asked for)."""
    _TASKS.append((names, from_config))


def task_from_config(config):
    """The Task of `config` from the package that registered config.task (see
    `register_task`); a ConfigError naming the known tasks for any other."""
    task = config.get("task")
    for names, from_config in _TASKS:
        if task in names:
            return from_config(config)
    known = sorted(name for names, _ in _TASKS for name in names)
    raise ConfigError(f"config.task {task!r} is not a registered task (known: {known}); "
                      f"experiment configs come from configs/<task>.py")


def _zeros(spec: dict) -> dict:
    return {name: np.zeros(s.shape, s.dtype) for name, s in spec.items()}


def check_batch(task, batch: dict, what: str) -> None:
    """Raises a DataError naming the field when the host-local numpy `batch` does not have the
    layout `task.batch_spec` gives for its rows (keys, shapes, dtypes): the data read and the
    model built from the config disagree (e.g. model.max_len against the data's length)."""
    rows = len(next(iter(batch.values())))
    spec = task.batch_spec(rows)
    if set(batch) != set(spec):
        raise DataError(f"{what}: the data's batches hold {sorted(batch)}, but the task expects "
                        f"{sorted(spec)}")
    for name, s in spec.items():
        have = np.asarray(batch[name])
        if have.shape != s.shape or have.dtype != jnp.dtype(s.dtype):
            raise DataError(
                f"{what}: batch field {name!r} is {have.dtype}{list(have.shape)}, but the config "
                f"makes the model expect {jnp.dtype(s.dtype)}{list(s.shape)} (rows, then "
                f"sequence length: check model.max_len and the data's length options against "
                f"each other)")
