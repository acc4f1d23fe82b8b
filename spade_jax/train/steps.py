"""Pure train and eval steps, jitted by the loop with explicit shardings and a donated state.

A task supplies `model_inputs(batch) -> tuple` and `metrics(outputs, batch) -> {name: (sum,
count)}` with a 'loss' entry; the loss that is differentiated is loss_sum / loss_count, so
padded examples (count 0) and micro-batches of any size average correctly.

The train step's metrics (scalars): the task's means, 'grad_norm' (global, before clipping),
'param_norm' after the update with its parts 'param_norm_s4' (the parameters of S4 layers, whose
A_im alone would dominate the total) and 'param_norm_rest', 'update_ratio' (the norm of the
optimiser's update over the norm of the parameters it updates), 'finite' and 'skipped' (updates
skipped so far under skip_nonfinite).
"""
import jax
import jax.numpy as jnp
import optax

from spade_jax.train.optim import in_s4


def _sums(task, model, params, batch, rng, deterministic):
    outputs = model.apply({"params": params}, *task.model_inputs(batch),
                          deterministic=deterministic, rngs={"dropout": rng})
    return task.metrics(outputs, batch)


def _norms(params) -> dict:
    """{'param_norm', 'param_norm_s4', 'param_norm_rest'} of a parameter tree (float32)."""
    squares = {True: jnp.zeros((), jnp.float32), False: jnp.zeros((), jnp.float32)}
    for path, x in jax.tree_util.tree_leaves_with_path(params):
        squares[in_s4(path)] += jnp.sum(jnp.square(x.astype(jnp.float32)))
    return {"param_norm": jnp.sqrt(squares[True] + squares[False]),
            "param_norm_s4": jnp.sqrt(squares[True]), "param_norm_rest": jnp.sqrt(squares[False])}


def make_train_step(model, tx, task, *, grad_accum_steps: int, skip_nonfinite: bool, seed: int):
    """train_step(state, batch) -> (state, metrics). The batch (global) is split into
    grad_accum_steps micro-batches along axis 0; gradients of the summed loss are accumulated and
    divided by the total loss count, so accumulation equals one big batch."""

    def micro(params, batch, rng):
        def loss_fn(p):
            sums = _sums(task, model, p, batch, rng, False)
            return sums["loss"][0], sums
        (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return grads, sums

    def train_step(state, batch):
        rng = jax.random.fold_in(jax.random.PRNGKey(seed), state.step)
        if grad_accum_steps == 1:
            grads, sums = micro(state.params, batch, rng)
        else:
            split = jax.tree_util.tree_map(
                lambda x: x.reshape(grad_accum_steps, x.shape[0] // grad_accum_steps, *x.shape[1:]),
                batch)

            def body(carry, xs):
                i, mb = xs
                g, s = micro(state.params, mb, jax.random.fold_in(rng, i))
                return jax.tree_util.tree_map(jnp.add, carry, (g, s)), None

            zeros = jax.eval_shape(micro, state.params, jax.tree_util.tree_map(lambda x: x[0], split), rng)
            zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
            (grads, sums), _ = jax.lax.scan(body, zeros, (jnp.arange(grad_accum_steps), split))
        count = jnp.maximum(sums["loss"][1], 1.0)
        grads = jax.tree_util.tree_map(lambda g: g / count, grads)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        finite = jnp.isfinite(grad_norm) & jnp.isfinite(sums["loss"][0])
        if skip_nonfinite:
            keep = lambda a, b: jax.tree_util.tree_map(lambda x, y: jnp.where(finite, x, y), a, b)
            new = new.replace(params=keep(params, state.params),
                              opt_state=keep(opt_state, state.opt_state),
                              skipped=state.skipped + (~finite).astype(jnp.int32))
        metrics = {name: s / jnp.maximum(c, 1.0) for name, (s, c) in sums.items()}
        metrics.update(_norms(new.params), grad_norm=grad_norm, finite=finite,
                       skipped=new.skipped,
                       update_ratio=optax.tree.norm(updates)
                       / jnp.maximum(optax.tree.norm(state.params), 1e-12))
        return new, metrics

    return train_step


def jit_train_step(model, tx, task, config, state_shardings, batch_shardings):
    """`make_train_step` from the config's grad_accum_steps / skip_nonfinite / seed, jitted with
    explicit shardings and the state donated: (state, batch) -> (state, metrics). Trace it
    inside `spade_jax.train.sharding.model_context(mesh, rules)`."""
    step = make_train_step(model, tx, task, grad_accum_steps=config.grad_accum_steps,
                           skip_nonfinite=config.skip_nonfinite, seed=config.seed)
    return jax.jit(step, in_shardings=(state_shardings, batch_shardings),
                   out_shardings=(state_shardings, None), donate_argnums=0)


def make_eval_step(model, task):
    """eval_step(params, batch) -> {name: (sum, count)} (summed over the batch)."""
    def eval_step(params, batch):
        return _sums(task, model, params, batch, jax.random.PRNGKey(0), True)
    return eval_step
