"""The engine's config, described once: every field the training engine reads, its default, its
meaning and its allowed values, as the dataclasses below (`Engine`, with its `Optimizer` and
`Mesh` sections).

Experiment configs (configs/*.py) start from `default_config()` (those dataclasses as a
ConfigDict, with the model's section) and change what they need. `validate(config, ...)` is the
one place where the engine's sections are checked, before anything is built or compiled: every
bad value is a ConfigError naming the field; it returns the checked `Engine`.
"""
import dataclasses
import math
from typing import Optional

import ml_collections

from spade_jax.train import sharding
from spade_jax.model.config import default_model_config
from spade_jax.runtime.errors import ConfigError, closest

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "linear", "constant")


def _field(default, *, low=None, high=None, choices=None):
    """A dataclass field with its allowed values (checked by `validate`)."""
    return dataclasses.field(default=default, metadata=dict(low=low, high=high, choices=choices))


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """config.optimizer (spade_jax.train.optim)."""

    name: str = _field("adamw", choices=OPTIMIZERS)
    learning_rate: float = _field(1e-3, low=0.0)
    b1: float = _field(0.9, low=0.0, high=1.0)
    b2: float = _field(0.98, low=0.0, high=1.0)
    eps: float = _field(1e-8, low=0.0)
    weight_decay: float = _field(0.01, low=0.0)
    momentum: float = _field(0.9, low=0.0)
    nesterov: bool = True
    schedule: str = _field("cosine", choices=SCHEDULES)
    warmup_steps: int = _field(100, low=0)
    end_lr_factor: float = _field(0.0, low=0.0)
    clip_norm: float = _field(1.0, low=0.0)
    ssm_learning_rate: Optional[float] = _field(1e-3, low=0.0)  # None: learning_rate
    ssm_weight_decay: float = _field(0.0, low=0.0)
    freeze_ssm: bool = False


@dataclasses.dataclass(frozen=True)
class Mesh:
    """config.mesh: device-mesh axis sizes, one of them may be -1 (spade_jax.train.sharding)."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    # multislice: slices the data axis spans over the data-centre network (0: as many as the
    # devices form, 1 on a single slice); data within a slice = data / dcn_data
    dcn_data: int = _field(0, low=0)


@dataclasses.dataclass(frozen=True)
class Engine:
    """Every engine field of an experiment config (config.model is spade_jax.model.config's)."""

    seed: int = _field(0, low=0, high=2**32 - 1)
    batch_size: int = _field(32, low=1)  # global batch (all hosts), split into grad_accum_steps micro-batches
    grad_accum_steps: int = _field(1, low=1)
    num_train_steps: int = _field(1000, low=1)
    optimizer: Optimizer = Optimizer()
    mesh: Mesh = Mesh()
    logical_axis_rules: tuple = sharding.DEFAULT_RULES
    log_every: int = _field(50, low=0)
    eval_every: int = _field(500, low=0)  # validation (and best-checkpoint) interval; 0 = only at the end
    eval_batch_size: int = _field(0, low=0)  # 0: batch_size
    max_eval_batches: int = _field(0, low=0)  # 0: the whole split
    checkpoint_every: int = _field(500, low=0)
    keep_checkpoints: int = _field(2, low=1)
    async_checkpoints: bool = True
    skip_nonfinite: bool = False  # True: skip updates with non-finite gradients (and count them)
    max_skipped_fraction: float = _field(0.1, low=0.0, high=1.0)  # skip_nonfinite: stop when more of the last updates were skipped
    skip_window: int = _field(100, low=1)  # the last updates that max_skipped_fraction counts
    peak_flops: float = _field(0.0, low=0.0)  # per device, the MFU denominator; 0: measured (float32 matmul) at start
    profile_steps: tuple = ()  # (first, last): a jax.profiler trace of those steps in WORKDIR/profile
    show_steps: bool = True  # process 0's per-step progress: a tqdm bar on a terminal, a line per logging step in a log; False: neither (evaluation lines stay)
    # > 0: stop training after this many seconds of this invocation (every host at the same
    # step), save, evaluate and report as at the end; results.json says stopped_on_budget
    max_wall_s: float = _field(0.0, low=0.0)

    @property
    def eval_batch(self) -> int:
        """The global evaluation batch (eval_batch_size, or batch_size when 0)."""
        return self.eval_batch_size or self.batch_size


_SECTIONS = {"optimizer": Optimizer, "mesh": Mesh}


def default_config() -> ml_collections.ConfigDict:
    """The engine's fields at their defaults, with `model` (spade_jax.model.config), as a ConfigDict."""
    values = dataclasses.asdict(Engine())
    values["logical_axis_rules"] = [list(rule) for rule in Engine.logical_axis_rules]
    values["profile_steps"] = ()
    return ml_collections.ConfigDict({"model": default_model_config(), **values})


def _section(cls, values, prefix: str):
    """An instance of the dataclass `cls` from `values`, each field checked against its
    metadata; unknown and missing fields are errors."""
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known)) if prefix else []
    if unknown and prefix == "config.mesh.":
        raise ConfigError(f"config.mesh has unknown axes {unknown}; axes are {sorted(known)}")
    if unknown:
        raise ConfigError(f"unknown {prefix[:-1]} field(s) {unknown}{closest(unknown[0], known)}")
    out = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            raise ConfigError(f"the config has no field {prefix}{f.name}; build experiment "
                              f"configs from spade_jax.train.defaults.default_config()")
        value = values[f.name]
        if f.name in _SECTIONS:
            value = _section(_SECTIONS[f.name], dict(value), f"config.{f.name}.")
        else:
            _check_value(f"{prefix}{f.name}", value, f.metadata)
        out[f.name] = value
    return cls(**out)


def _check_value(name: str, value, meta) -> None:
    low, high, choices = meta.get("low"), meta.get("high"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
    if value is None or (low is None and high is None):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    if low is not None and high is not None and not low <= value <= high:
        bound = "2**32)" if high == 2**32 - 1 else f"{high}]"
        raise ConfigError(f"{name} must be in [{low}, {bound}, got {value}")
    if low is not None and value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")


def mesh_keeping_batch(batch: int, accum: int, device_count: int,
                       process_count: int) -> dict | None:
    """{'data', 'fsdp', 'tensor'}: the mesh with the most data-parallel devices (the rest over
    tensor) that divides `batch` into grad_accum_steps x data-parallel rows; None if only one
    data-parallel device would."""
    keep = [d for d in range(device_count, 1, -1) if device_count % d == 0
            and batch % (d * accum) == 0 and batch % process_count == 0
            and (d * accum) % process_count == 0]
    return {"data": keep[0], "fsdp": 1, "tensor": device_count // keep[0]} if keep else None


def _batch_advice(batch: int, accum: int, dp: int, device_count: int, process_count: int) -> str:
    """What to use instead of a batch that the data-parallel devices do not divide: the nearest
    batch sizes that divide, and a mesh that keeps this batch (`mesh_keeping_batch`)."""
    step = math.lcm(dp * accum, process_count)
    below, above = batch // step * step, (batch // step + 1) * step
    advice = "use " + " or ".join(f"--config.batch_size={b}" for b in (below, above) if b > 0)
    mesh = mesh_keeping_batch(batch, accum, device_count, process_count)
    if mesh is not None and mesh["data"] < dp:
        advice += (f", or keep {batch} with " + " ".join(f"--config.mesh.{k}={v}"
                                                       for k, v in mesh.items())
                   + f" ({mesh['data']} data-parallel devices, {mesh['tensor']}-way tensor "
                   f"parallelism)")
    return advice


def validate(config, device_count: int, process_count: int) -> Engine:
    """The engine's sections of `config` checked (types and ranges per field; the optimiser's
    combinations; the mesh against `device_count`; the batches against the data-parallel size
    and `process_count`), as an `Engine`. Raises ConfigError naming the field."""
    top = [f.name for f in dataclasses.fields(Engine)]
    engine = _section(Engine, {k: config[k] for k in top if k in config}, "config.")
    engine = dataclasses.replace(
        engine, logical_axis_rules=sharding.rules_from_config(engine.logical_axis_rules),
        profile_steps=tuple(engine.profile_steps or ()))
    if engine.optimizer.name == "adam" and engine.optimizer.weight_decay:
        raise ConfigError("config.optimizer.name='adam' has no weight decay; use 'adamw' or "
                          "set optimizer.weight_decay = 0")
    profile = engine.profile_steps
    if profile and not (len(profile) == 2 and 0 <= profile[0] < profile[1]):
        raise ConfigError(f"config.profile_steps must be () or (first, last) with 0 <= first < "
                          f"last, got {profile}")
    shape = sharding.mesh_shape(dataclasses.asdict(engine.mesh), device_count)
    dp = math.prod(shape[sharding.MESH_AXES.index(a)] for a in sharding.BATCH_AXES)
    accum = engine.grad_accum_steps
    # dp counts the devices of every host, so a multi-host batch needs no extra factor for the
    # processes: each host reads batch_size / process_count rows for its own devices.
    if engine.batch_size % (dp * accum) or engine.batch_size % process_count:
        raise ConfigError(
            f"config.batch_size ({engine.batch_size}) must be divisible by grad_accum_steps "
            f"({accum}) x data-parallel size ({dp} = mesh data x fsdp, all hosts' devices) and "
            f"by the number of processes ({process_count}); "
            + _batch_advice(engine.batch_size, accum, dp, device_count, process_count))
    if engine.eval_batch % dp or engine.eval_batch % process_count:
        raise ConfigError(f"config.eval_batch_size ({engine.eval_batch}) must be divisible by "
                          f"the data-parallel size ({dp}) and by the number of processes "
                          f"({process_count})")
    return engine
