"""TrainState, created already sharded.

The model creates its parameters in Flax's logical-partitioning boxes; the optimiser state built
from them carries the same boxes. Their shardings follow from `config.logical_axis_rules`, and
`create_sharded_state` jits the initialisation with those shardings as outputs (so no device
ever holds an unsharded copy) and returns plain, unboxed arrays.
"""
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from spade_jax import sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: updates applied so far
    params: Any  # parameter tree (plain arrays)
    opt_state: Any
    skipped: jax.Array  # int32 scalar: updates skipped for non-finite gradients


def create_sharded_state(model, tx, example_inputs, seed: int, mesh, rules):
    """Returns (state, state_shardings). example_inputs: a tuple of arrays for model.init."""
    def boxed_init():
        params = model.init(jax.random.PRNGKey(seed), *example_inputs)["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          skipped=jnp.zeros((), jnp.int32))

    with nn.logical_axis_rules(rules):
        shardings = sharding.state_shardings(jax.eval_shape(boxed_init), mesh, rules)
        state = jax.jit(lambda: nn.unbox(boxed_init()), out_shardings=shardings)()
    # The same shardings, in exactly the state's tree structure (optax's masked states hold empty
    # nodes that the logical specs tree does not mirror).
    return state, jax.tree_util.tree_map(lambda x: x.sharding, state)


def abstract_state(state, shardings):
    """jax.ShapeDtypeStructs of `state` on `shardings` (what a checkpoint is restored onto)."""
    return jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
