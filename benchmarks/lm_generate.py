"""Decoding speed and cache size as the text grows: SPADE's recurrent view against the
transformer's cache of every previous token.

    PYTHONPATH=. python benchmarks/lm_generate.py [--d_model=128 --layers=2 --lengths=512,2048,8192]

For each family and each text length L, a randomly initialised LM (the quick config's shape,
vocabulary 12,752 with the quick config's adaptive softmax) gets a cache for a text of L tokens
and decodes 64 tokens: ms per token and cache MiB. SPADE's cache is the same whatever L (S4
state + radius + 1 keys / values per layer). The transformer's holds max_len = L keys / values
per layer, preallocated, and every step attends over all of them (masked): its time and memory
per token grow with L. Greedy decoding, batch 1, after compilation.
"""
import argparse
import time

import jax
import jax.numpy as jnp

from spade_jax import decode, models
from spade_jax.config import ModelConfig, S4Config


def _cfg(family, args, max_len):
    return ModelConfig(family=family, vocab_size=12_752, num_layers=args.layers,
                       d_model=args.d_model, num_heads=4, d_ff=4 * args.d_model, radius=63,
                       max_len=max_len, dropout=0.0, causal=True, head="lm", final_norm=False,
                       adaptive_cutoffs=(2000, 6000), s4=S4Config(d_state=32))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--d_model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lengths", default="512,2048,8192")
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    for family in ("spade", "transformer"):
        params = None
        for length in map(int, args.lengths.split(",")):
            # SPADE's S4 kernel is derived for the training length (256 here); decoding runs on.
            cfg = _cfg(family, args, 256 if family == "spade" else length)
            if params is None:
                params = jax.jit(models.build_model(cfg).init)(
                    jax.random.PRNGKey(0), jnp.ones((1, 8), jnp.int32))["params"]
            model = decode.decoding_model(cfg)
            cache = decode.init_cache(model, params, 1)
            step = jax.jit(lambda c, t: decode.step(model, params, c, t))
            token = jnp.ones((1,), jnp.int32)
            logits, cache = step(cache, token)  # compile
            logits.block_until_ready()
            start = time.perf_counter()
            for _ in range(args.tokens):
                logits, cache = step(cache, jnp.argmax(logits, -1).astype(jnp.int32))
            logits.block_until_ready()
            per = (time.perf_counter() - start) / args.tokens
            mib = sum(x.nbytes for x in jax.tree_util.tree_leaves(cache)) / 2**20
            print(f"{family:12s} text {length:6d} tokens: {per * 1e3:7.2f} ms/token "
                  f"({1 / per:7.1f} tokens/s), cache {mib:8.2f} MiB", flush=True)


if __name__ == "__main__":
    main()
