"""Attention kernels against sequence length: our blocked local and chunk attention, full
attention, and `jax.nn.dot_product_attention` with a window (issue 7, `attention`).

    python -m benchmarks.attention [--lengths=1K,...,64K]
                                   [--impls=local,chunk,full,dpa_window,splash,cudnn]
                                   [--passes=fwd,fwd+bwd] [--batch=1] [--heads=4] [--head_dim=32]
                                   [--radius=127] [--chunk=128] [--causal] [--dtype=float32]
                                   [--repeats=5] [--quick]

Implementations, all on q, k, v of shape (batch, L, heads, head_dim), float32, no padding mask:
  local       spade_jax.attention.local_attention (blocked window: 3 blocks of radius + 1 keys
              per query, 2 when causal)
  chunk       spade_jax.attention.chunk_attention (chunks of --chunk, no attention across them)
  full        spade_jax.attention.full_attention (L keys per query)
  dpa_window  jax.nn.dot_product_attention(..., local_window_size=(radius, radius)) -- (radius,
              0) when causal -- with its default implementation (on CPU: the XLA path, which
              builds the full L x L scores and mask)
  splash      spade_jax.attention_accel.splash_attention, the same window (model.attention_impl
              'splash'): Pallas splash attention; TPU only
  cudnn       spade_jax.attention_accel.cudnn_attention, the causal window (model.attention_impl
              'cudnn'): cuDNN fused attention; GPU only, with --causal and --dtype=bfloat16
An accelerator implementation is measured only where it can run: on other backends (or without
--causal / bfloat16 for cudnn) it is left out of the sweep and the report says why.
The defaults are the LRA Text model's attention (4 heads of 32, radius 127, chunk 128). The
'x local' column is the time relative to `local` at the same L and pass.
"""
import sys

from benchmarks import fit, flags, isolation, plots, report, sweep, timing
from benchmarks.rows import exit_code, memory_mib, per_token_us
from spade_jax import cli

IMPLS = ("local", "chunk", "full", "dpa_window", "splash", "cudnn")
ACCELERATOR = {"splash": "tpu", "cudnn": "gpu"}  # implementation -> the JAX backend it needs


def attention_fn(impl: str, radius: int, chunk: int, causal: bool):
    """q, k, v -> output for one implementation."""
    import jax

    from spade_jax import attention, attention_accel
    window = attention_accel.window_of("window", radius, causal)
    if impl == "splash":
        return lambda q, k, v: attention_accel.splash_attention(q, k, v, window=window)
    if impl == "cudnn":
        return lambda q, k, v: attention_accel.cudnn_attention(q, k, v, window=window)
    if impl == "local":
        return lambda q, k, v: attention.local_attention(q, k, v, radius=radius, causal=causal)
    if impl == "chunk":
        return lambda q, k, v: attention.chunk_attention(q, k, v, chunk=chunk, causal=causal)
    if impl == "full":
        return lambda q, k, v: attention.full_attention(q, k, v, causal=causal)
    if impl == "dpa_window":
        return lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=causal,
                                                            local_window_size=window)
    raise ValueError(f"unknown attention implementation {impl!r}")


def measure(impl: str, pass_: str, length: int, batch: int, heads: int, head_dim: int,
            radius: int, chunk: int, causal: bool, repeats: int, warmup: int,
            dtype: str = "float32", deadline=None) -> dict:
    """(In a point.) Times one implementation on random q, k, v (batch, length, heads, head_dim)."""
    import jax
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    q, k, v = (jax.random.normal(key, (batch, length, heads, head_dim), dtype) for key in keys)
    step = timing.differentiated(attention_fn(impl, radius, chunk, causal), pass_, (0, 1, 2))
    return dict(timing.time_jitted(step, q, k, v, repeats=repeats, warmup=warmup,
                                   deadline=deadline), tokens=batch * length)


def accelerators_left_out(args, header: dict) -> dict:
    """{impl: why} for the selected accelerator implementations that cannot run here: on another
    backend than the one they need (asked of a fresh process: the parent starts no backend),
    and cudnn without --causal or bfloat16."""
    wanted = [impl for impl in args.impls if impl in ACCELERATOR]
    if not wanted:
        return {}
    probe = isolation.run_point("benchmarks.machine:probe", {}, timeout_s=args.timeout_s,
                                runtime=header)
    backend = probe.get("backend")
    why = {}
    for impl in wanted:
        if backend != ACCELERATOR[impl]:
            why[impl] = (f"needs the {ACCELERATOR[impl]} backend; this machine's JAX backend is "
                         f"{backend or 'unknown (' + probe.get('detail', '') + ')'}")
        elif impl == "cudnn" and not (args.causal and args.dtype == "bfloat16"):
            why[impl] = "cuDNN's window is causal and its kernel bfloat16: pass --causal " \
                        "--dtype=bfloat16"
    return why


@cli.user_errors
def main(argv=None):
    p = flags.parser(__doc__, batch=1, passes=True)
    flags.add_names(p, "--impls", IMPLS)
    p.add_argument("--heads", type=int, default=None, help="default 4; --quick 2")
    p.add_argument("--head_dim", type=int, default=None, help="default 32; --quick 8")
    p.add_argument("--radius", type=int, default=None, help="window half-width (default 127; "
                   "--quick 15)")
    p.add_argument("--chunk", type=int, default=None, help="chunk length (default 128; --quick 16)")
    p.add_argument("--causal", action="store_true")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="q, k, v dtype (cudnn needs bfloat16)")
    args = flags.parse(p, argv)
    for name, full, quick in (("heads", 4, 2), ("head_dim", 32, 8), ("radius", 127, 15),
                              ("chunk", 128, 16)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    out, header = report.start("attention", args)
    left_out = accelerators_left_out(args, header)
    for impl, why in left_out.items():
        print(f"{impl}: not measured: {why}", file=sys.stderr)
    kwargs = dict(batch=args.batch, heads=args.heads, head_dim=args.head_dim, radius=args.radius,
                  chunk=args.chunk, causal=args.causal, dtype=args.dtype)
    series = [{"label": f"{impl} {pass_}", "impl": impl, "pass": pass_,
               "kwargs": dict(kwargs, impl=impl, pass_=pass_)}
              for impl in args.impls if impl not in left_out for pass_ in args.passes]
    rows = sweep.run(series, args.lengths, args, "benchmarks.attention:measure",
                     runtime=header)
    fits, fit_sections = fit.growth(rows, "run_peak_bytes")
    columns = [("impl", lambda r: r["impl"]), ("pass", lambda r: r["pass"])] + \
        report.TIMING_COLUMNS + [
        ("x local", lambda r: report.fmt(fit.time_ratio(rows, r, impl="local"), ".3g")),
        report.PER_TOKEN_COLUMN] + report.MEMORY_COLUMNS

    def plot(path):
        panels = [{"title": f"{pass_}: time per token", "ylabel": "microseconds per token",
                   "guides": plots.PER_TOKEN_GUIDES,
                   "series": plots.series_points([r for r in rows if r["pass"] == pass_],
                                                 per_token_us)}
                  for pass_ in args.passes]
        panels.append({"title": "peak memory of the calls above a fresh JAX process",
                       "ylabel": "MiB", "series": plots.series_points(
                           rows, lambda r: memory_mib(r, "run_peak_bytes"))})
        plots.loglog_plot(path, panels, f"attention (batch {args.batch}, {args.heads} heads of "
                          f"{args.head_dim}, radius {args.radius}, chunk {args.chunk})", ncols=3)

    title = (f"Attention, batch {args.batch}, {args.heads} heads of {args.head_dim}, radius "
             f"{args.radius}, chunk {args.chunk}, {'causal' if args.causal else 'bidirectional'}, "
             f"{args.dtype}")
    sections = [(title, report.markdown_table(rows, columns))] + fit_sections
    if left_out:
        sections.append(("Not measured", "\n".join(f"- {impl}: {why}"
                                                   for impl, why in left_out.items())))
    report.write_report(out, "attention", header=header, args=args, rows=rows, plot=plot,
                        data={"fits": fits, "not_measured": left_out}, sections=sections)
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
