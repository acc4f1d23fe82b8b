"""The machine's measured matmul peak, float32 and bfloat16 (issue 7, `roofline`).

    python -m benchmarks.roofline [--sizes=512,1024,2048,4096] [--dtypes=float32,bfloat16]
                                  [--repeats=10] [--quick]

One fresh process times `jax.jit(x @ y)` for square n x n matrices at each size and dtype (and a
batch of small 128 x 128 matmuls, the shape of blocked attention), under the default matmul
precision. FLOP/s = 2 n^3 / time; 'best' uses the fastest call, 'median' the median. The peak of
a dtype is its best FLOP/s over the square sizes: the MFU denominator of benchmarks.mfu, which
measures it again in its own process (`matmul_rates`).
"""
import sys

from benchmarks import flags, isolation, plots, report, timing
from benchmarks.rows import OK
from spade_jax.runtime import cli

DTYPES = ("float32", "bfloat16")


def matmul_rates(sizes, dtypes, batched=(), *, repeats: int, warmup: int = 1,
                 deadline=None) -> list:
    """(In a point.) One row per (dtype, batch, n): timing stats and FLOP/s of (batch,) n x n x n
    matmuls. batched: (batch, n) pairs besides the square sizes (batch 1)."""
    import jax
    import jax.numpy as jnp
    rows = []
    matmul = jax.jit(lambda x, y: x @ y)
    for dtype in dtypes:
        for batch, n in [(1, n) for n in sizes] + [tuple(b) for b in batched]:
            shape = (n, n) if batch == 1 else (batch, n, n)
            x, y = (jax.random.normal(jax.random.PRNGKey(i), shape, jnp.dtype(dtype))
                    for i in range(2))
            compiled, compile_s = timing.compile_timed(matmul, x, y)
            stats = timing.time_calls(lambda: compiled(x, y).block_until_ready(), repeats,
                                      warmup, deadline)
            flop = 2.0 * batch * n**3
            rows.append(dict(stats, dtype=dtype, batch=batch, n=n, flop=flop, compile_s=compile_s,
                             best_flops=flop / stats["min_s"],
                             median_flops=flop / stats["median_s"]))
    return rows


def peaks(rows) -> dict:
    """{dtype: best FLOP/s over the square (batch 1) sizes}."""
    out = {}
    for r in rows:
        if r["batch"] == 1:
            out[r["dtype"]] = max(out.get(r["dtype"], 0.0), r["best_flops"])
    return out


def measure(sizes, dtypes, batched, repeats: int, warmup: int, deadline=None) -> dict:
    """(In a point.)"""
    rows = matmul_rates(sizes, dtypes, batched, repeats=repeats, warmup=warmup, deadline=deadline)
    return {"matmuls": rows, "peaks": peaks(rows)}


COLUMNS = [
    ("dtype", lambda r: r["dtype"]),
    ("shape", lambda r: (f"{r['batch']} x " if r["batch"] > 1 else "") + f"{r['n']}^3"),
    ("median ms", lambda r: f"{r['median_s'] * 1e3:.3f}"),
    ("best GFLOP/s", lambda r: f"{r['best_flops'] / 1e9:.1f}"),
    ("median GFLOP/s", lambda r: f"{r['median_flops'] / 1e9:.1f}"),
    ("compile s", lambda r: f"{r['compile_s']:.2f}"),
]


@cli.user_errors
def main(argv=None):
    p = flags.parser(__doc__, lengths=None, repeats=10)
    p.add_argument("--sizes", type=flags.parse_lengths, default=None,
                   help="square matrix sizes n (default 512,1024,2048,4096; --quick 128,256)")
    flags.add_names(p, "--dtypes", DTYPES)
    args = flags.parse(p, argv)
    args.sizes = args.sizes or ([128, 256] if args.quick else [512, 1024, 2048, 4096])
    batched = [(8, 32)] if args.quick else [(256, 128)]
    out, header = report.start("roofline", args)
    result = isolation.run_point("benchmarks.roofline:measure", dict(
        sizes=args.sizes, dtypes=args.dtypes, batched=batched, repeats=args.repeats,
        warmup=args.warmup, deadline=timing.deadline_after(args.timeout_s)),
        timeout_s=args.timeout_s, memory_gb=args.memory_gb, runtime=header)
    if result["status"] != OK:
        print(f"roofline: {result['status']} ({result.get('detail')})", file=sys.stderr)
        return 1
    rows = result["matmuls"]
    peak_lines = "\n".join(f"- {dtype} peak: {value / 1e9:.1f} GFLOP/s (best over square sizes)"
                           for dtype, value in result["peaks"].items())

    def plot(path):
        plots.loglog_plot(path, [{
            "title": "matmul throughput (best call)", "ylabel": "GFLOP/s",
            "xlabel": "matrix size n (n x n x n)", "guides": (),
            "series": {dtype: ([r["n"] for r in rows if r["dtype"] == dtype and r["batch"] == 1],
                               [r["best_flops"] / 1e9 for r in rows
                                if r["dtype"] == dtype and r["batch"] == 1])
                       for dtype in args.dtypes}}], "roofline")

    report.write_report(out, "roofline", header=header, args=args, rows=rows, plot=plot,
                        data={"peaks": result["peaks"], "peak_bytes": result.get("peak_bytes")},
                        sections=[("Matmuls", report.markdown_table(rows, COLUMNS)),
                                  ("Peaks", peak_lines)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
