"""Runs a small model forward and backward on random tokens and says what it did.

    python -m spade_jax.demo [--family=spade] [--length=4096] [--batch=2] [--steps=3]

A smoke check of an installation: builds the model family from the default model config, jit-
compiles a loss-and-gradient step, and prints the architecture, parameter count, loss, gradient
norm, compile time and step time.
"""
import sys
import time

from absl import flags
import jax
import jax.numpy as jnp
import optax

from spade_jax.runtime import cli
from spade_jax.model import families, models
from spade_jax.model.config import ModelConfig


def define_flags(flag_values, argv):
    del argv
    on = dict(flag_values=flag_values)
    flags.DEFINE_enum("family", "spade", list(families.FAMILIES), "Model family.", **on)
    flags.DEFINE_integer("length", 4096, "Sequence length.", lower_bound=8, **on)
    flags.DEFINE_integer("batch", 2, "Batch size.", lower_bound=1, **on)
    flags.DEFINE_integer("steps", 3, "Timed steps after compilation.", lower_bound=1, **on)


def main(FLAGS):
    cfg = ModelConfig(**families.model_fields(FLAGS.family), d_model=64, num_heads=4, d_ff=256, num_layers=4,
                      radius=127, max_len=FLAGS.length, num_classes=10, dropout=0.0)
    model = models.build_model(cfg)
    key_tokens, key_labels, key_init = jax.random.split(jax.random.PRNGKey(0), 3)
    tokens = jax.random.randint(key_tokens, (FLAGS.batch, FLAGS.length), 1, cfg.vocab_size)
    labels = jax.random.randint(key_labels, (FLAGS.batch,), 0, cfg.num_classes)
    params = jax.jit(model.init)(key_init, tokens[:, :8])["params"]
    count = sum(x.size for x in jax.tree_util.tree_leaves(params))
    print(f"{FLAGS.family}: layers {families.layer_kinds(cfg)}, d_model {cfg.d_model}, "
          f"{count:,} parameters, batch {FLAGS.batch} x length {FLAGS.length}, "
          f"devices {jax.devices()}")

    def loss_fn(p):
        logits = model.apply({"params": p}, tokens)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    step = jax.jit(jax.value_and_grad(loss_fn))
    start = time.perf_counter()
    loss, grads = jax.block_until_ready(step(params))
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(FLAGS.steps):
        start = time.perf_counter()
        jax.block_until_ready(step(params))
        times.append(time.perf_counter() - start)
    gnorm = optax.tree.norm(grads)
    print(f"forward+backward: loss {float(loss):.4f} (ln {cfg.num_classes} = "
          f"{float(jnp.log(cfg.num_classes)):.4f}), gradient norm {float(gnorm):.4f}, "
          f"finite {bool(jnp.isfinite(gnorm))}")
    print(f"first call (compile + run) {compile_s:.2f} s; step {min(times) * 1e3:.1f} ms "
          f"(best of {FLAGS.steps}), {FLAGS.batch * FLAGS.length / min(times):,.0f} tokens/s")


if __name__ == "__main__":
    sys.exit(cli.run_absl(sys.argv, define_flags, main, __doc__))
