"""The S4 layer alone against sequence length: kernel generation vs convolution, `fft` vs
`scan`, `dplr` vs `diag` (issue 7, `ssm`).

    python -m benchmarks.ssm [--lengths=1K,...,64K] [--variants=dplr,diag,scan,conv]
                             [--passes=fwd,fwd+bwd] [--batch=8] [--d_model=128] [--d_state=64]
                             [--causal] [--chunk_size=128] [--repeats=5] [--quick]
                             [--peer_dir=DIR]

Variants (spade_jax.model.ssm.S4Layer, bidirectional as in the LRA encoders unless --causal):
  dplr   kernel='dplr', mode='fft' (S4, the default): the whole layer, and its kernel
         generation alone (`conv_kernel`, Cauchy kernel + inverse FFT)
  diag   kernel='diag', mode='fft' (S4D): the whole layer, and its kernel alone (Vandermonde)
  scan   kernel='diag', mode='scan': the layer by associative scan (no kernel)
  chunked kernel='diag', mode='chunked': the layer by matrix products in chunks (issue 22)
  conv   the FFT convolution alone (the layer's `_fft_conv`) with a given kernel
Passes: 'fwd', and 'fwd+bwd' (gradient of 0.5 * sum(y^2) for the parameters and the input).
The kernel depends only on the parameters: the layer computes it once per call, whatever the
batch. Target (issue 7): kernel generation <= 25% of the layer's forward time at L = 16K.
With --peer_dir DIR (a folder outside the checkout holding DIR/S5, a clone of
github.com/lindermanlab/S5): the row `s5 layer`, S5's SSM at the same H, state size and
direction (benchmarks.peers), timed in the same harness; the 'x s5' column is a layer's time
relative to it, and the issue-22 targets compare the layers with it (the S4D layer in its
fastest exact mode >= 1.5x faster at 4K and 16K, the DPLR layer at least as fast). A peer that
is absent or does not load is left out and the report says why.
"""
import sys

from benchmarks import fit, flags, peers, plots, report, sweep, timing
from benchmarks.rows import OK, exit_code, find, memory_mib, per_token_us
from spade_jax.runtime import cli

VARIANTS = ("dplr", "diag", "scan", "chunked", "conv")
LAYER = {"dplr": ("dplr", "fft"), "diag": ("diag", "fft"), "scan": ("diag", "scan"),
         "chunked": ("diag", "chunked")}
TARGET_LENGTH = 16384
# Issue 22: the S4D layer (in its fastest exact mode) against S5's, at these lengths.
PEER_LENGTHS = (4096, 16384)
DIAG_MODES = ("diag", "chunked", "scan")  # the S4D layer's modes, all exactly equal


def measure(variant: str, op: str, pass_: str, length: int, batch: int, d_model: int,
            d_state: int, bidirectional: bool, repeats: int, warmup: int,
            deadline=None, peer_root=None, chunk_size=None) -> dict:
    """(In a point.) Times one op ('layer', 'kernel' or 'conv') of one variant on x (batch,
    length, d_model); variant 's5': S5's layer from the clone `peer_root` (benchmarks.peers).
    chunk_size: mode='chunked''s steps per chunk (None: S4Layer's default)."""
    import flax.linen as nn
    import jax

    from spade_jax.model.ssm import S4Layer
    from spade_jax.model.ssm.layer import _fft_conv  # the layer's own convolution

    key_x, key_k, key_init = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(key_x, (batch, length, d_model))
    if op == "conv":
        kernel_length = 2 * length if bidirectional else length
        k = jax.random.normal(key_k, (d_model, kernel_length)) / kernel_length
        fn, args = _fft_conv, (x, k)
    elif variant == "s5":
        init, fn = peers.s5_layer(peer_root, d_model, d_state, bidirectional)
        args = (jax.jit(init)(key_init, x[0, :8]), x)
    else:
        kernel, mode = LAYER[variant]
        chunks = {} if chunk_size is None else {"chunk_size": chunk_size}
        layer = S4Layer(d_model=d_model, d_state=d_state, kernel=kernel, mode=mode,
                        bidirectional=bidirectional, l_max=length, **chunks)
        params = nn.unbox(jax.jit(layer.init)(key_init, x[:1, :8]))
        if op == "kernel":
            fn = lambda p: layer.apply(p, length, method="conv_kernel")  # noqa: E731
            args = (params,)
        else:
            fn, args = (lambda p, u: layer.apply(p, u)), (params, x)
    step = timing.differentiated(fn, pass_, tuple(range(len(args))))
    stats = timing.time_jitted(step, *args, repeats=repeats, warmup=warmup, deadline=deadline)
    return dict(stats, tokens=batch * length)


def series_for(args, peer_roots=None) -> list:
    """The sweep's series: each variant's ops and passes, then each loaded peer's layer
    (peer_roots: {peer: its clone})."""
    ops = {"dplr": ("layer", "kernel"), "diag": ("layer", "kernel"), "scan": ("layer",),
           "chunked": ("layer",), "conv": ("conv",)}
    kwargs = dict(batch=args.batch, d_model=args.d_model, d_state=args.d_state,
                  bidirectional=not args.causal, chunk_size=args.chunk_size)
    out = []
    for variant in args.variants:
        for op in ops[variant]:
            for pass_ in args.passes:
                out.append({"label": f"{variant} {op} {pass_}", "variant": variant, "op": op,
                            "pass": pass_, "kwargs": dict(kwargs, variant=variant, op=op,
                                                          pass_=pass_)})
    for peer, root in (peer_roots or {}).items():
        for pass_ in args.passes:
            out.append({"label": f"{peer} layer {pass_}", "variant": peer, "op": "layer",
                        "pass": pass_, "kwargs": dict(kwargs, variant=peer, op="layer",
                                                      pass_=pass_, peer_root=root)})
    return out


def peer_targets(rows, args) -> list:
    """Issue 22's targets against S5's layer (fwd+bwd where measured), at 4K and 16K where
    swept (else the longest length): the S4D layer in its fastest exact mode (of diag, chunked,
    scan) >= 1.5x faster, the DPLR layer at least as fast."""
    pass_ = "fwd+bwd" if "fwd+bwd" in args.passes else args.passes[0]
    lengths = [n for n in PEER_LENGTHS if n in args.lengths] or [max(args.lengths)]
    diag_modes = [v for v in DIAG_MODES if v in args.variants]
    goals = []
    for length in lengths:
        at = dict(op="layer", length=length, **{"pass": pass_})
        s5 = find(rows, variant="s5", **at)
        compared = []  # (name, row, limit)
        if diag_modes:
            diag = [find(rows, variant=v, **at) for v in diag_modes]
            ok = [r for r in diag if r and r["status"] == OK]
            fastest = min(ok, key=lambda r: r["median_s"]) if ok else None
            compared.append((f"the fastest S4D layer ({fastest['variant']})" if fastest else
                             "the S4D layer", fastest or diag[0], 1.5))
        if "dplr" in args.variants:
            compared.append(("the DPLR layer", find(rows, variant="dplr", **at), 1.0))
        for name, row, limit in compared:
            ratio = row and s5 and fit.time_ratio(rows, s5, variant=row["variant"], op="layer")
            goals.append(fit.target(
                f"{name} {pass_} at L={flags.length_label(length)}: speed-up over S5's layer",
                ratio, limit, higher_is_better=True, unit="x",
                missing=fit.why_missing({name: row, "s5 layer": s5})))
    return goals


def share(rows, r):
    """r's median time as a fraction of its variant's layer time at the same L and pass (the
    convolution alone: of the dplr layer's)."""
    return fit.time_ratio(rows, r, op="layer",
                          variant=r["variant"] if r["op"] != "conv" else "dplr")


@cli.user_errors
def main(argv=None):
    p = flags.parser(__doc__, batch=8, passes=True)
    flags.add_names(p, "--variants", VARIANTS)
    p.add_argument("--d_model", type=int, default=None, help="channels H (default 128; --quick 16)")
    p.add_argument("--d_state", type=int, default=None, help="state size N (default 64; --quick 8)")
    p.add_argument("--causal", action="store_true", help="one causal kernel (LM) instead of two")
    p.add_argument("--chunk_size", type=int, default=None, help="steps per chunk T of the "
                   "'chunked' variant (default: S4Layer's, 128, the fastest of 64 / 128 / 256 "
                   "on the 2-core CPU)")
    p.add_argument("--peer_dir", default=None, help="folder outside the checkout with the peers' "
                   "clones (DIR/S5 = github.com/lindermanlab/S5): adds S5's layer to the table "
                   "(default: no peers)")
    args = flags.parse(p, argv)
    if args.chunk_size is not None and args.chunk_size < 1:
        p.error(f"--chunk_size must be >= 1, got {args.chunk_size}")
    args.peer_dir = peers.checked_dir(args.peer_dir)
    args.d_model = args.d_model or (16 if args.quick else 128)
    args.d_state = args.d_state or (8 if args.quick else 64)
    if args.quick and args.batch == 8:
        args.batch = 2
    out, header = report.start("ssm", args)
    loaded, left_out = peers.check(args.peer_dir, peers.for_benchmark("ssm"),
                                   timeout_s=args.timeout_s, runtime=header)
    roots = {name: peers.root_of(args.peer_dir, name) for name in loaded}
    rows = sweep.run(series_for(args, roots), args.lengths, args, "benchmarks.ssm:measure",
                     runtime=header)
    fits, fit_sections = fit.growth(rows, "run_peak_bytes")
    columns = [("variant", lambda r: r["variant"]), ("op", lambda r: r["op"]),
               ("pass", lambda r: r["pass"])] + report.TIMING_COLUMNS + [
        ("share of layer", lambda r: "-" if r["op"] == "layer" else
         report.fmt(share(rows, r) and 100 * share(rows, r), ".0f") + "%"),
        report.PER_TOKEN_COLUMN] + report.MEMORY_COLUMNS
    if loaded:
        columns.insert(-len(report.MEMORY_COLUMNS) - 1, ("x s5", lambda r: "-" if r["op"] !=
                       "layer" else report.fmt(fit.time_ratio(rows, r, variant="s5"), ".3g")))

    at = TARGET_LENGTH if TARGET_LENGTH in args.lengths else max(args.lengths)
    goals = []
    for variant in ("dplr", "diag"):
        kernel = find(rows, variant=variant, op="kernel", length=at, **{"pass": "fwd"})
        layer = find(rows, variant=variant, op="layer", length=at, **{"pass": "fwd"})
        if variant in args.variants and "fwd" in args.passes:
            goals.append(fit.target(
                f"{variant} kernel generation as a fraction of the {variant} layer's forward "
                f"time at L={flags.length_label(at)}", kernel and share(rows, kernel), 0.25,
                higher_is_better=False, missing=fit.why_missing(
                    {f"{variant} kernel fwd": kernel, f"{variant} layer fwd": layer})))
    if loaded:
        goals += peer_targets(rows, args)

    def plot(path):
        panels = [{"title": f"{pass_}: time per token (batch {args.batch}, H {args.d_model}, "
                            f"N {args.d_state})", "ylabel": "microseconds per token",
                   "guides": plots.PER_TOKEN_GUIDES,
                   "series": plots.series_points(
                       [r for r in rows if r["pass"] == pass_], per_token_us)}
                  for pass_ in args.passes]
        panels.append({"title": "peak memory of the calls above a fresh JAX process",
                       "ylabel": "MiB", "series": plots.series_points(
                           rows, lambda r: memory_mib(r, "run_peak_bytes"))})
        plots.loglog_plot(path, panels, "S4 layer", ncols=3)

    report.write_report(out, "ssm", header=header, args=args, rows=rows, plot=plot, targets=goals,
                        data=dict(fits=fits, **peers.record(args.peer_dir, loaded, left_out)),
                        sections=[
                            (f"S4 layer, batch {args.batch}, H {args.d_model}, N {args.d_state}, "
                             f"{'causal' if args.causal else 'bidirectional'}",
                             report.markdown_table(rows, columns))] + fit_sections
                        + peers.notes_section(loaded, left_out))
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
