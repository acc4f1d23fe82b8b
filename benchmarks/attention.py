"""Attention kernels against sequence length: our blocked local and chunk attention, full
attention, and `jax.nn.dot_product_attention` with a window (issue 7, `attention`).

    python -m benchmarks.attention [--lengths=1K,...,64K] [--impls=local,chunk,full,dpa_window]
                                   [--passes=fwd,fwd+bwd] [--batch=1] [--heads=4] [--head_dim=32]
                                   [--radius=127] [--chunk=128] [--causal] [--repeats=5] [--quick]

Implementations, all on q, k, v of shape (batch, L, heads, head_dim), float32, no padding mask:
  local       spade_jax.attention.local_attention (blocked window: 3 blocks of radius + 1 keys
              per query, 2 when causal)
  chunk       spade_jax.attention.chunk_attention (chunks of --chunk, no attention across them)
  full        spade_jax.attention.full_attention (L keys per query)
  dpa_window  jax.nn.dot_product_attention(..., local_window_size=(radius, radius)) -- (radius,
              0) when causal -- with its default implementation (on CPU: the XLA path, which
              builds the full L x L scores and mask)
The defaults are the LRA Text model's attention (4 heads of 32, radius 127, chunk 128). The
'x local' column is the time relative to `local` at the same L and pass.
"""
import sys

from benchmarks import common

IMPLS = ("local", "chunk", "full", "dpa_window")


def attention_fn(impl: str, radius: int, chunk: int, causal: bool):
    """q, k, v -> output for one implementation."""
    import jax

    from spade_jax import attention
    if impl == "local":
        return lambda q, k, v: attention.local_attention(q, k, v, radius=radius, causal=causal)
    if impl == "chunk":
        return lambda q, k, v: attention.chunk_attention(q, k, v, chunk=chunk, causal=causal)
    if impl == "full":
        return lambda q, k, v: attention.full_attention(q, k, v, causal=causal)
    if impl == "dpa_window":
        window = (radius, 0) if causal else (radius, radius)
        return lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=causal,
                                                            local_window_size=window)
    raise ValueError(f"unknown attention implementation {impl!r}")


def measure(impl: str, pass_: str, length: int, batch: int, heads: int, head_dim: int,
            radius: int, chunk: int, causal: bool, repeats: int, warmup: int) -> dict:
    """(In a point.) Times one implementation on random q, k, v (batch, length, heads, head_dim)."""
    import jax
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    q, k, v = (jax.random.normal(key, (batch, length, heads, head_dim)) for key in keys)
    step = common.differentiated(attention_fn(impl, radius, chunk, causal), pass_, (0, 1, 2))
    return dict(common.time_jitted(step, q, k, v, repeats=repeats, warmup=warmup),
                tokens=batch * length)


def main(argv=None):
    p = common.parser(__doc__, batch=1, passes=True)
    common.add_names(p, "--impls", IMPLS)
    p.add_argument("--heads", type=int, default=None, help="default 4; --quick 2")
    p.add_argument("--head_dim", type=int, default=None, help="default 32; --quick 8")
    p.add_argument("--radius", type=int, default=None, help="window half-width (default 127; "
                   "--quick 15)")
    p.add_argument("--chunk", type=int, default=None, help="chunk length (default 128; --quick 16)")
    p.add_argument("--causal", action="store_true")
    args = common.parse(p, argv)
    for name, full, quick in (("heads", 4, 2), ("head_dim", 32, 8), ("radius", 127, 15),
                              ("chunk", 128, 16)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    out, header = common.start("attention", args)
    kwargs = dict(batch=args.batch, heads=args.heads, head_dim=args.head_dim, radius=args.radius,
                  chunk=args.chunk, causal=args.causal)
    series = [{"label": f"{impl} {pass_}", "impl": impl, "pass": pass_,
               "kwargs": dict(kwargs, impl=impl, pass_=pass_)}
              for impl in args.impls for pass_ in args.passes]
    rows = common.sweep(series, args.lengths, args, "benchmarks.attention:measure")
    fits, fit_sections = common.growth(rows, "run_peak_bytes")
    columns = [("impl", lambda r: r["impl"]), ("pass", lambda r: r["pass"])] + \
        common.TIMING_COLUMNS + [
        ("x local", lambda r: common.fmt(common.time_ratio(rows, r, impl="local"), ".3g")),
        common.PER_TOKEN_COLUMN] + common.MEMORY_COLUMNS

    def plot(path):
        panels = [{"title": f"{pass_}: time per token", "ylabel": "microseconds per token",
                   "guides": common.PER_TOKEN_GUIDES,
                   "series": common.series_points([r for r in rows if r["pass"] == pass_],
                                                  common.per_token_us)}
                  for pass_ in args.passes]
        panels.append({"title": "peak memory of the calls above a fresh JAX process",
                       "ylabel": "MiB", "series": common.series_points(
                           rows, lambda r: common.memory_mib(r, "run_peak_bytes"))})
        common.loglog_plot(path, panels, f"attention (batch {args.batch}, {args.heads} heads of "
                           f"{args.head_dim}, radius {args.radius}, chunk {args.chunk})", ncols=3)

    title = (f"Attention, batch {args.batch}, {args.heads} heads of {args.head_dim}, radius "
             f"{args.radius}, chunk {args.chunk}, {'causal' if args.causal else 'bidirectional'}")
    common.write_report(out, "attention", header=header, args=args, rows=rows, plot=plot,
                        data={"fits": fits},
                        sections=[(title, common.markdown_table(rows, columns))] + fit_sections)
    return common.exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
