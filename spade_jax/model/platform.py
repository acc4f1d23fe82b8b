"""Where a traced program runs, for the modules that pick a kernel by platform (the attention
kernels of model.attention_impl, the S4 convolution): the platform of the mesh a job is
compiled for, and how a Pallas kernel is split over that mesh."""
from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from spade_jax.model import axes
from spade_jax.runtime.errors import ConfigError

# The platform each accelerator kernel of model.attention_impl needs.
KERNEL_PLATFORMS = {"flash": "tpu", "splash": "tpu", "cudnn": "gpu"}


def target_platform() -> str:
    """The platform the traced program is for: that of the mesh set by
    spade_jax.train.sharding.model_context (the devices a job is compiled for, e.g. a TPU topology's
    compile-only devices on a CPU host), else JAX's default backend."""
    mesh = jax.sharding.get_abstract_mesh()
    device = None if mesh.empty else mesh.abstract_device
    return jax.default_backend() if device is None else device.platform


def check_kernel(attention_impl: str, platform: str) -> None:
    """Raises ConfigError, before anything is built, when model.attention_impl names a kernel
    that the job's devices cannot run."""
    needs = KERNEL_PLATFORMS.get(attention_impl)
    if needs is not None and platform != needs:
        raise ConfigError(
            f"model.attention_impl={attention_impl!r} runs on a {needs.upper()} only, and this "
            f"job's devices are {platform!r}: set model.attention_impl to 'auto' (the fastest "
            "kernel each platform has) or 'blocked'")


def pallas_interpret(impl: str, interpret: bool | None) -> bool:
    """Whether the Pallas kernel behind attention_impl `impl` runs in the interpreter: as
    `interpret` says (None: compiled, which needs a program for a TPU; RuntimeError otherwise)."""
    if interpret is None:
        backend = target_platform()
        if backend != "tpu":
            raise RuntimeError(
                f"attention_impl={impl!r} needs a TPU (the JAX backend is {backend!r}); use "
                "attention_impl='blocked', or interpret=True for a (slow) check on this backend")
        return False
    return bool(interpret)


def kernel_shard_specs(shape) -> tuple | None:
    """(q/k/v spec, mask spec) that split a (batch, length, heads, head_dim) attention kernel
    over the mesh set by spade_jax.train.sharding.model_context: the batch over the mesh axes of
    the activations' batch rule and the heads over those of the heads rule (each only where it
    divides the size; length and head_dim stay whole). None when no mesh is set or nothing is
    split.

    A Pallas (Mosaic) kernel cannot be partitioned by XLA: under a multi-device mesh it must run
    inside `jax.shard_map`, each device on its own examples and heads."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return None
    batch_axes, _, head_axes, _ = nn.logical_to_mesh_axes(
        (axes.ACT_BATCH, axes.ACT_LENGTH, axes.ACT_HEADS, axes.ACT_HEAD_DIM))

    def fitted(names, size):
        names = (names,) if isinstance(names, str) else tuple(names or ())
        split = int(np.prod([mesh.shape[a] for a in names])) if names else 1
        return names if names and size % split == 0 else None

    batch, heads = fitted(batch_axes, shape[0]), fitted(head_axes, shape[2])
    if batch is None and heads is None:
        return None
    return P(batch, None, heads, None), P(batch, None)
