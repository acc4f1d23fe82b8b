"""TrainState, created already sharded.

The model creates its parameters in Flax's logical-partitioning boxes; the optimiser state built
from them carries the same boxes. Their shardings follow from `config.logical_axis_rules`, and
`sharded_init` jits the initialisation with those shardings as outputs (so no device ever holds
an unsharded copy; the state holds plain, unboxed arrays) and gives the state's abstract shapes
without creating it.
"""
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from spade_jax.train import sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: updates applied so far
    params: Any  # parameter tree (plain arrays)
    opt_state: Any
    skipped: jax.Array  # int32 scalar: updates skipped for non-finite gradients


def sharded_init(model, tx, example_inputs, seed: int, mesh, rules):
    """(init, abstract_state): `init()` creates the TrainState on the mesh, already sharded;
    `abstract_state` is that state as jax.ShapeDtypeStructs carrying their shardings (what a
    step is compiled for and a checkpoint restored onto), derived without allocating anything.
    example_inputs: a tuple of arrays or ShapeDtypeStructs for model.init (only their shapes
    and dtypes matter)."""
    shapes = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in example_inputs)

    def boxed_init():
        inputs = tuple(jnp.zeros(s.shape, s.dtype) for s in shapes)
        params = model.init(jax.random.PRNGKey(seed), *inputs)["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          skipped=jnp.zeros((), jnp.int32))

    with sharding.model_context(mesh, rules):  # traced for the mesh's devices, as the steps are
        boxed = jax.eval_shape(boxed_init)
    with nn.logical_axis_rules(rules):
        shardings = sharding.state_shardings(boxed, mesh, rules)
    jitted = jax.jit(lambda: nn.unbox(boxed_init()), out_shardings=shardings)
    with sharding.model_context(mesh, rules):
        # The same shardings, in exactly the state's tree structure (optax's masked states
        # hold empty nodes that the logical specs tree does not mirror).
        abstract = jitted.eval_shape()

    def init():
        with sharding.model_context(mesh, rules):
            return jitted()

    return init, abstract


def create_sharded_state(model, tx, example_inputs, seed: int, mesh, rules):
    """Returns (state, state_shardings), the state created already sharded (`sharded_init`)."""
    init, abstract = sharded_init(model, tx, example_inputs, seed, mesh, rules)
    return init(), jax.tree_util.tree_map(lambda x: x.sharding, abstract)


def abstract_state(state, shardings):
    """jax.ShapeDtypeStructs of `state` on `shardings` (what a checkpoint is restored onto)."""
    return jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
