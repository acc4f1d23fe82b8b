"""Attention kernels against sequence length: our blocked local and chunk attention, full
attention, and `jax.nn.dot_product_attention` with a window (issue 7, `attention`).

    python -m benchmarks.attention [--lengths=1K,...,64K]
                                   [--impls=local,chunk,full,dpa_window,splash,cudnn]
                                   [--passes=fwd,fwd+bwd] [--batch=1] [--heads=4] [--head_dim=32]
                                   [--radius=127] [--chunk=128] [--causal] [--dtype=float32]
                                   [--repeats=5] [--quick] [--peer_dir=DIR] [--lra_block=50]

Implementations, all on q, k, v of shape (batch, L, heads, head_dim), float32, no padding mask:
  local       spade_jax.model.attention.local_attention (blocked window: 3 blocks of radius + 1 keys
              per query, 2 when causal)
  chunk       spade_jax.model.attention.chunk_attention (chunks of --chunk, no attention across them)
  full        spade_jax.model.attention.full_attention (L keys per query)
  dpa_window  jax.nn.dot_product_attention(..., local_window_size=(radius, radius)) -- (radius,
              0) when causal -- with its default implementation (on CPU: the XLA path, which
              builds the full L x L scores and mask)
  splash      spade_jax.model.attention_accel.splash_attention, the same window (model.attention_impl
              'splash'): Pallas splash attention; TPU only
  cudnn       spade_jax.model.attention_accel.cudnn_attention, the causal window (model.attention_impl
              'cudnn'): cuDNN fused attention; GPU only, with --causal and --dtype=bfloat16
An accelerator implementation is measured only where it can run: on other backends (or without
--causal / bfloat16 for cudnn) it is left out of the sweep and the report says why.
The defaults are the LRA Text model's attention (4 heads of 32, radius 127, chunk 128). The
'x local' column is the time relative to `local` at the same L and pass.
With --peer_dir DIR (a folder outside the checkout holding DIR/long-range-arena, a clone of
github.com/google-research/long-range-arena): the rows `lra_block`, LRA's local attention in
blocks of --lra_block keys on the same q, k, v (benchmarks.peers; bidirectional only), and the
issue-22 target: `local` within 1.2x of its time at every length. A peer that is absent or does
not load is left out and the report says why.
"""
import sys

from benchmarks import fit, flags, isolation, peers, plots, report, sweep, timing
from benchmarks.rows import exit_code, find, memory_mib, per_token_us
from spade_jax.runtime import cli
from spade_jax.runtime.errors import ConfigError

IMPLS = ("local", "chunk", "full", "dpa_window", "splash", "cudnn")
ACCELERATOR = {"splash": "tpu", "cudnn": "gpu"}  # implementation -> the JAX backend it needs
PEER_RATIO_LIMIT = 1.2  # issue 22: local attention within 1.2x of LRA's block attention


def attention_fn(impl: str, radius: int, chunk: int, causal: bool, peer_root=None,
                 lra_block=None):
    """q, k, v -> output for one implementation (lra_block: LRA's, from the clone `peer_root`,
    in blocks of `lra_block`)."""
    import jax

    from spade_jax.model import attention, attention_accel
    window = (radius, 0 if causal else radius)  # window attention's keys (AttentionKind.window)
    if impl == "splash":
        return lambda q, k, v: attention_accel.splash_attention(q, k, v, window=window)
    if impl == "cudnn":
        return lambda q, k, v: attention_accel.cudnn_attention(q, k, v, window=window)
    if impl == "lra_block":
        return peers.lra_block_attention(peer_root, lra_block)
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
            dtype: str = "float32", deadline=None, peer_root=None, lra_block=None) -> dict:
    """(In a point.) Times one implementation on random q, k, v (batch, length, heads, head_dim)."""
    import jax
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    q, k, v = (jax.random.normal(key, (batch, length, heads, head_dim), dtype) for key in keys)
    step = timing.differentiated(attention_fn(impl, radius, chunk, causal, peer_root, lra_block),
                                 pass_, (0, 1, 2))
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


def peer_targets(rows, args) -> list:
    """Issue 22's target at every swept length (fwd+bwd where measured): `local` within 1.2x of
    LRA's block attention's time."""
    if "local" not in args.impls:
        return []
    pass_ = "fwd+bwd" if "fwd+bwd" in args.passes else args.passes[0]
    goals = []
    for length in args.lengths:
        local = find(rows, impl="local", length=length, **{"pass": pass_})
        lra = find(rows, impl="lra_block", length=length, **{"pass": pass_})
        goals.append(fit.target(
            f"local (radius {args.radius}) {pass_} at L={flags.length_label(length)}: time "
            f"relative to LRA's block-{args.lra_block} attention",
            local and fit.time_ratio(rows, local, impl="lra_block"), PEER_RATIO_LIMIT,
            higher_is_better=False, unit="x",
            missing=fit.why_missing({"local": local, "lra_block": lra})))
    return goals


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
    p.add_argument("--peer_dir", default=None, help="folder outside the checkout with the peers' "
                   "clones (DIR/long-range-arena = github.com/google-research/long-range-arena): "
                   "adds LRA's block attention to the table (default: no peers)")
    p.add_argument("--lra_block", type=int, default=None, help="block length of LRA's local "
                   "attention with --peer_dir (default 50, issue 22's; --quick 16)")
    args = flags.parse(p, argv)
    args.peer_dir = peers.checked_dir(args.peer_dir)
    if args.lra_block is not None and args.lra_block < 1:
        raise ConfigError(f"--lra_block must be >= 1, got {args.lra_block}")
    for name, full, quick in (("heads", 4, 2), ("head_dim", 32, 8), ("radius", 127, 15),
                              ("chunk", 128, 16), ("lra_block", 50, 16)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    out, header = report.start("attention", args)
    left_out = accelerators_left_out(args, header)
    for impl, why in left_out.items():
        print(f"{impl}: not measured: {why}", file=sys.stderr)
    if args.causal and args.peer_dir:
        loaded, peers_left_out = {}, {
            name: "measured bidirectional only: LRA's causal mask is built by its LocalAttention "
                  "module, which needs the removed flax.deprecated.nn; run without --causal"
            for name in peers.for_benchmark("attention")}
    else:
        loaded, peers_left_out = peers.check(args.peer_dir, peers.for_benchmark("attention"),
                                             timeout_s=args.timeout_s, runtime=header)
    kwargs = dict(batch=args.batch, heads=args.heads, head_dim=args.head_dim, radius=args.radius,
                  chunk=args.chunk, causal=args.causal, dtype=args.dtype)
    series = [{"label": f"{impl} {pass_}", "impl": impl, "pass": pass_,
               "kwargs": dict(kwargs, impl=impl, pass_=pass_)}
              for impl in args.impls if impl not in left_out for pass_ in args.passes]
    series += [{"label": f"{name} {pass_}", "impl": name, "pass": pass_,
                "kwargs": dict(kwargs, impl=name, pass_=pass_, lra_block=args.lra_block,
                               peer_root=peers.root_of(args.peer_dir, name))}
               for name in loaded for pass_ in args.passes]
    rows = sweep.run(series, args.lengths, args, "benchmarks.attention:measure",
                     runtime=header)
    fits, fit_sections = fit.growth(rows, "run_peak_bytes")
    columns = [("impl", lambda r: r["impl"]), ("pass", lambda r: r["pass"])] + \
        report.TIMING_COLUMNS + [
        ("x local", lambda r: report.fmt(fit.time_ratio(rows, r, impl="local"), ".3g")),
        report.PER_TOKEN_COLUMN] + report.MEMORY_COLUMNS

    lra_label = f", LRA block {args.lra_block}" if loaded else ""

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
                          f"{args.head_dim}, radius {args.radius}, chunk {args.chunk}"
                          f"{lra_label})", ncols=3)

    title = (f"Attention, batch {args.batch}, {args.heads} heads of {args.head_dim}, radius "
             f"{args.radius}, chunk {args.chunk}{lra_label}, "
             f"{'causal' if args.causal else 'bidirectional'}, {args.dtype}")
    sections = [(title, report.markdown_table(rows, columns))] + fit_sections
    left_out.update(peers_left_out)  # one "Not measured" section for both kinds
    sections += peers.notes_section(loaded, left_out)
    report.write_report(out, "attention", header=header, args=args, rows=rows, plot=plot,
                        targets=peer_targets(rows, args) if loaded else [],
                        data=dict(fits=fits, not_measured=left_out,
                                  **peers.record(args.peer_dir, loaded, peers_left_out)),
                        sections=sections)
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
