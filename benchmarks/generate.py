"""Time and memory per generated token against the context length, next to re-running the
parallel forward on the whole context (issue 7, `generate`). Needs spade_jax.model.decode (the LM
issue); without it the command says so and exits with status 2.

    python -m benchmarks.generate [--lengths=1K,4K,16K] [--families=spade,...]
                                  [--ops=decode,forward] [--batch=1] [--repeats=20] [--quick]

Each family's causal LM at the LRA Text width (configs/text.py's model with head 'lm', causal,
max_len = context + the steps taken). Ops, each point in a fresh process:
  decode   spade_jax.model.decode: init_cache, `feed` the context (a random prompt of L tokens; its time
           is reported as prefill), then time one `step` + greedy choice of the next token
           (jitted, cache donated): the median of --repeats tokens after warm-up. The cache's
           size is reported (fixed for spade, local and s4; max_len entries for transformer).
  forward  the parallel forward of the LM on the whole context (B, L): what generating one
           token costs without a cache.
Targets (issue 7): SPADE's time per token at 16K within 1.2x of that at 1K; decoding at 4K at
least 50x faster than the forward at 4K.
"""
import importlib.util
import sys
import time

from benchmarks import fit, flags, plots, report, sweep, text_config, timing
from benchmarks.rows import MIB, OK, exit_code, find, memory_mib, per_token_us
from spade_jax.runtime import cli
from spade_jax.model import families

FAMILIES = families.lm_families()
OPS = ("decode", "forward")
MISSING = ("benchmarks.generate needs spade_jax.model.decode (incremental decoding, from the LM "
           "issue), which this checkout does not have; merge the LM work first")


def _decode_module():
    if importlib.util.find_spec("spade_jax.model.decode") is None:
        raise RuntimeError(MISSING)
    return importlib.import_module("spade_jax.model.decode")


def measure(model: dict, op: str, length: int, batch: int, repeats: int, warmup: int,
            deadline=None) -> dict:
    """(In a point.) One decoding step at context `length`, or the parallel forward on it."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from spade_jax.model import models
    from spade_jax.model.config import ModelConfig

    decode = _decode_module()
    cfg = ModelConfig.from_config(dict(model, max_len=length + warmup + repeats + 1))
    key_prompt, key_init = jax.random.split(jax.random.PRNGKey(0))
    prompt = jax.random.randint(key_prompt, (batch, length), 1, cfg.vocab_size)
    lm = models.build_model(cfg)
    params = nn.unbox(jax.jit(lm.init)(key_init, prompt[:, :8])["params"])
    if op == "forward":
        stats = timing.time_jitted(lambda p, t: lm.apply({"params": p}, t), params, prompt,
                                   repeats=repeats, warmup=warmup, deadline=deadline)
        return dict(stats, tokens=batch)

    net = decode.decoding_model(cfg)
    cache = decode.init_cache(net, params, batch)
    cache_bytes = timing.tree_bytes(cache)
    feed, feed_compile_s = timing.compile_timed(decode.feed, net, params, cache, prompt)
    start = time.perf_counter()
    logits, cache = jax.block_until_ready(feed(params, cache, prompt))
    prefill_s = time.perf_counter() - start

    def one_token(params, cache, token):
        logits, cache = decode.step(net, params, cache, token)
        return jnp.argmax(logits, axis=-1).astype(jnp.int32), cache

    token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    compiled, compile_s = timing.compile_timed(jax.jit(one_token, donate_argnums=1),
                                               params, cache, token)
    state = [token, cache]

    def call():
        state[0], state[1] = compiled(params, state[1], state[0])
        jax.block_until_ready(state[0])

    stats = timing.time_compiled(call, repeats, warmup, deadline)
    return dict(stats, tokens=batch, compile_s=compile_s, cache_bytes=cache_bytes,
                prefill_s=prefill_s, prefill_compile_s=feed_compile_s)


def targets(rows, lengths):
    def decode_at(length):
        return find(rows, family="spade", op="decode", length=length)

    def time_of(row):
        return row["median_s"] if row and row["status"] == OK else None

    short, long_ = min(lengths), (16384 if 16384 in lengths else max(lengths))
    a, b = decode_at(short), decode_at(long_)
    growth = time_of(b) / time_of(a) if time_of(a) and time_of(b) else None
    mid = 4096 if 4096 in lengths else sorted(lengths)[len(lengths) // 2]
    d, f = decode_at(mid), find(rows, family="spade", op="forward", length=mid)
    speed = time_of(f) / time_of(d) if time_of(d) and time_of(f) else None
    return [
        fit.target(f"SPADE time per generated token at context {flags.length_label(long_)} "
                   f"over that at {flags.length_label(short)}", growth, 1.2,
                   higher_is_better=False, unit="x",
                   missing=fit.why_missing({"spade decode (short)": a,
                                            "spade decode (long)": b})),
        fit.target(f"SPADE decoding speed-up over re-running the forward at context "
                   f"{flags.length_label(mid)}", speed, 50, higher_is_better=True, unit="x",
                   missing=fit.why_missing({"spade decode": d, "spade forward": f})),
    ]


COLUMNS = [("family", lambda r: r["family"]), ("op", lambda r: r["op"])] + \
    report.TIMING_COLUMNS + [
    report.PER_TOKEN_COLUMN,
    ("cache MiB", lambda r: report.fmt(r.get("cache_bytes") and r["cache_bytes"] / MIB)),
    ("prefill s", lambda r: report.fmt(r.get("prefill_s"), ".2f")),
] + report.MEMORY_COLUMNS


@cli.user_errors
def main(argv=None):
    p = flags.parser(__doc__, lengths="1K,4K,16K", quick_lengths="64,256", repeats=20, batch=1)
    flags.add_names(p, "--families", FAMILIES)
    flags.add_names(p, "--ops", OPS)
    args = flags.parse(p, argv)
    if importlib.util.find_spec("spade_jax.model.decode") is None:
        print(MISSING, file=sys.stderr)
        return 2
    quick = text_config.QUICK_MODEL if args.quick else {}
    series = [{"label": f"{family} {op}", "family": family, "op": op,
               "kwargs": {"model": text_config.text_model(f"model={family}", head="lm", causal=True,
                                                     dropout=0.0, **quick),
                          "op": op, "batch": args.batch}}
              for family in args.families for op in args.ops]
    out, header = report.start("generate", args)
    rows = sweep.run(series, args.lengths, args, "benchmarks.generate:measure",
                     runtime=header)
    goals = targets(rows, args.lengths)

    def plot(path):
        plots.loglog_plot(path, [
            {"title": "time per generated token", "ylabel": "microseconds per token",
             "guides": ((0, "flat (constant per token)"), (1, "slope 1 (linear in context)")),
             "series": plots.series_points(rows, per_token_us)},
            {"title": "peak memory of the calls above a fresh JAX process", "ylabel": "MiB",
             "series": plots.series_points(
                 rows, lambda r: memory_mib(r, "run_peak_bytes"))}],
            f"generation (batch {args.batch})")

    report.write_report(out, "generate", header=header, args=args, rows=rows, plot=plot,
                        targets=goals, sections=[(f"Generation, batch {args.batch}",
                                                  report.markdown_table(rows, COLUMNS))])
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
