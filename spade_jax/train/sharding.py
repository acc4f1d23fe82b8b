"""Device mesh, logical-axis rules and batch placement.

The mesh has three axes, sized in the config (`config.mesh`, -1 = the remaining devices):
  data    pure data parallelism (parameters replicated)
  fsdp    data parallelism with parameters and optimiser state sharded (ZeRO-3 style)
  tensor  model parallelism over heads / FFN width / vocabulary
On several TPU slices joined over the data-centre network (multislice), the data axis spans the
slices: `config.mesh.dcn_data` of them (0: as many as the devices form) times the data size
within a slice, so only the data-parallel gradient reduction crosses the slower network (as
MaxText's dcn_data_parallelism); fsdp and tensor stay within a slice.
Model code names array axes logically (spade_jax.model.axes: parameters 'embed', 'mlp', ...;
activations 'activation_batch', 'activation_embed', ...); `config.logical_axis_rules` maps those
names to mesh axes. The batch is split over data x fsdp.
"""
import contextlib
import math

import flax.linen as nn
import jax
import numpy as np
from absl import logging
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from spade_jax.model import axes
from spade_jax.runtime.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

DEFAULT_RULES = (
    # activations: the batch split over data x fsdp; features whole, except over tensor
    (axes.ACT_BATCH, BATCH_AXES),
    (axes.ACT_LENGTH, None),
    (axes.ACT_EMBED, None),
    (axes.ACT_MLP, "tensor"),
    (axes.ACT_HEADS, "tensor"),
    (axes.ACT_HEAD_DIM, None),
    # parameters (and their optimiser state): d_model over fsdp (ZeRO-3), widths over tensor
    (axes.EMBED, "fsdp"),
    (axes.MLP, "tensor"),
    (axes.HEADS, "tensor"),
    (axes.HEAD_DIM, None),
    (axes.VOCAB, "tensor"),
    (axes.CLASSES, None),
    (axes.RELPOS_BUCKETS, None),
    (axes.SSM_STATE, None),
    (axes.SSM_OUT, None),
)


def mesh_shape(spec, device_count: int) -> tuple:
    """Resolves the config's mesh sizes ({axis: size}, one size may be -1; 'dcn_data' is not an
    axis, see `make_mesh`) for device_count."""
    sizes = [int(spec.get(axis, 1)) for axis in MESH_AXES]
    unknown = sorted(set(spec) - set(MESH_AXES) - {"dcn_data"})
    if unknown:
        raise ConfigError(f"config.mesh has unknown axes {unknown}; axes are {MESH_AXES}")
    if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"config.mesh sizes must be positive, with at most one -1; got {dict(spec)}")
    fixed = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if device_count % fixed:
            raise ConfigError(f"config.mesh {dict(spec)}: {device_count} devices cannot be split "
                             f"into a multiple of {fixed}")
        sizes[sizes.index(-1)] = device_count // fixed
    if math.prod(sizes) != device_count:
        raise ConfigError(f"config.mesh {dict(spec)} needs {math.prod(sizes)} devices, but "
                         f"{device_count} are available")
    return tuple(sizes)


def slice_count(devices) -> int:
    """How many slices (multislice TPU: devices carry slice_index) the devices form."""
    return len({getattr(d, "slice_index", 0) for d in devices})


def make_mesh(spec, devices=None) -> Mesh:
    """A Mesh over all (or the given) devices with Auto axis types (logical-rule sharding). On
    several slices, the data axis is split slices-major (mesh_utils.create_hybrid_device_mesh):
    each slice holds data / slices of it, and fsdp and tensor whole."""
    devices = jax.devices() if devices is None else list(devices)
    shape = mesh_shape(spec, len(devices))
    types = (AxisType.Auto,) * len(MESH_AXES)
    slices = slice_count(devices)
    dcn = int(spec.get("dcn_data", 0)) or slices
    if dcn != slices:
        raise ConfigError(f"config.mesh.dcn_data is {dcn}, but the {len(devices)} devices form "
                          f"{slices} slice(s); set it to {slices} or 0 (as many as there are)")
    if slices == 1:
        return jax.make_mesh(shape, MESH_AXES, axis_types=types, devices=devices)
    if shape[0] % slices:
        raise ConfigError(f"config.mesh: the data axis ({shape[0]}) spans the {slices} slices, "
                          f"so it must be a multiple of {slices}; mesh {dict(spec)}")
    grid = mesh_utils.create_hybrid_device_mesh((shape[0] // slices,) + shape[1:],
                                                (slices, 1, 1), devices)
    return Mesh(grid, MESH_AXES, axis_types=types)


def rules_from_config(rules) -> tuple:
    """Logical-axis rules as a tuple of (name, mesh axes) with tuples, not lists."""
    out = []
    for name, targets in rules:
        if name not in axes.NAMES:
            raise ConfigError(f"config.logical_axis_rules names the logical axis {name!r}, which no "
                              f"array has; the names are {list(axes.NAMES)} (spade_jax/model/axes.py; "
                              "activations are 'activation_*')")
        if isinstance(targets, (list, tuple)):
            targets = tuple(targets)
            bad = [a for a in targets if a not in MESH_AXES]
        else:
            bad = [targets] if targets is not None and targets not in MESH_AXES else []
        if bad:
            raise ConfigError(f"config.logical_axis_rules maps {name!r} to unknown mesh axes {bad}")
        out.append((name, targets))
    return tuple(out)


@contextlib.contextmanager
def model_context(mesh: Mesh, rules):
    """The context a model's step is traced in: `mesh` set as JAX's mesh and the logical-axis
    rules. Both are needed for the activations' logical constraints
    (`nn.with_logical_constraint`) to apply: without a mesh set, Flax drops them, and XLA's
    partitioner places the activations from the shardings of the step's inputs alone."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def data_parallel_size(mesh: Mesh) -> int:
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Leading (batch) axis split over data x fsdp, the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def _divisible(spec: P, shape: tuple, mesh: Mesh) -> P:
    """`spec` with its mesh axes dropped from every dimension they do not divide evenly (that
    dimension is then replicated), e.g. a 17-token vocabulary over tensor = 2."""
    fitted = []
    for size, names in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        split = math.prod(mesh.shape[a] for a in ((names,) if isinstance(names, str) else names or ()))
        fitted.append(names if size % split == 0 else None)
    return P(*fitted)


def state_shardings(abstract_state, mesh: Mesh, rules):
    """NamedShardings for a pytree of (possibly logically partitioned) abstract arrays. A
    dimension that its rule's mesh axes do not divide is replicated (see `_divisible`), and the
    parameters concerned are logged."""
    replicated = []

    def leaf(path, spec, x):  # x: an abstract array, or an empty node of optax's masked states
        if not hasattr(x, "shape"):
            return NamedSharding(mesh, spec)
        fitted = _divisible(spec, x.shape, mesh)
        if fitted != spec and "opt_state" not in jax.tree_util.keystr(path):
            replicated.append(f"{jax.tree_util.keystr(path)} {tuple(x.shape)} {spec}")
        return NamedSharding(mesh, fitted)

    specs = nn.logical_to_mesh(nn.get_partition_spec(abstract_state), rules)
    shardings = jax.tree_util.tree_map_with_path(leaf, specs, nn.unbox(abstract_state),
                                                 is_leaf=lambda x: isinstance(x, P))
    if replicated and jax.process_index() == 0:
        logging.warning("mesh %s: replicated along the dimensions that their mesh axes do not "
                     "divide: %s", dict(mesh.shape), "; ".join(replicated))
    return shardings


def place_batch(batch: dict, mesh: Mesh) -> dict:
    """Host-local numpy batch (this process's rows) -> global jax arrays sharded over the batch.

    Each process passes only the rows it read; `make_array_from_process_local_data` assembles the
    global batch (process_count x local rows).
    """
    return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(v)), np.asarray(v))
            for k, v in batch.items()}
