"""A time-boxed reproduction on the accelerator at hand: the one command to run when a GPU or TPU
is lent for a few minutes.

    python -m benchmarks.reproduce --budget_s=480        # on the accelerator
    python -m benchmarks.reproduce --quick               # CPU smoke run (tests), ~2 minutes

Within --budget_s seconds it writes, into a new folder (benchmarks/results/reproduce/<time> or
--out), reproduce.json and reproduce.md with:
  * the machine: device kind and count, jax / jaxlib / flax versions, the commit;
  * blocks: one SPADE block against one full-attention block, forward+backward, in bfloat16 and
    float32, at 1K-64K (--lengths): time, peak memory, tokens/s. Full attention is the fastest
    the platform has: splash attention on TPU, cuDNN fused attention on GPU (bfloat16; causal,
    as cuDNN runs it, so both blocks are causal there), the blocked kernel elsewhere; both
    blocks without the relative-position bias (the fused kernels take none);
  * s4: the S4 layer alone, forward+backward, bidirectional: first at 4K and 16K, batch 8,
    H 256 (issue 22), the DPLR layer against S4D by FFT and S4D in chunked mode (matrix
    products; the platform question is whether it beats the FFT); then the DPLR layer at the
    same lengths as the blocks;
  * mfu: the LRA Text training step (SPADE, 4K tokens, batch 32): its analytic FLOPs per second
    against the chip's published dense bfloat16 peak (a measured float32 matmul peak where none
    is known, e.g. CPUs);
  * listops: the full ListOps recipe's model (configs/listops.py) trained on generated data in
    the release's format for a time box (config.max_wall_s), its validation accuracy against
    time (the recipe's optimiser, with 200 warmup steps instead of 3,000 to fit the box).
Each part has a share of the budget and fails soft: a part that errors or runs out of time is
reported and the next one runs. Sweeps stop a series at its first failure (out of memory, out
of time).
"""
import os
import subprocess
import sys
import time

from benchmarks import ROOT, flags, isolation, report, sweep, text_config
from benchmarks.rows import ERROR, OK, SKIPPED, find
from spade_jax.runtime import cli
from spade_jax.train import config_builder
from spade_jax.model.ssm.layer import CHUNK_SIZE

# Dense bfloat16 FLOP/s per device, from the vendors' published specifications; the first
# entry whose key is in jax's device_kind wins (so 'v5 lite' before 'v5').
PUBLISHED_PEAKS = (("H200", 989e12), ("H100", 989e12), ("A100", 312e12), ("L4", 121e12),
                   ("TPU v4", 275e12), ("TPU v5 lite", 197e12), ("TPU v5e", 197e12),
                   ("TPU v5", 459e12), ("TPU v6 lite", 918e12), ("TPU v6e", 918e12))
PARTS = {"blocks": 0.35, "s4": 0.2, "mfu": 0.15, "listops": 0.3}  # shares of the budget
S4_MODES = ("dplr", "diag", "chunked")  # benchmarks.ssm's variants
S4_MODES_LENGTHS = (4096, 16384)
FULL_ATTENTION = {"tpu": "splash", "gpu": "cudnn"}  # the platform's fastest (else 'blocked')


def published_peak(device_kind: str):
    for key, peak in PUBLISHED_PEAKS:
        if key.lower() in (device_kind or "").lower():
            return peak
    return None


def platform() -> dict:
    """(In a point.) Nothing to measure: the point's runtime report names the platform."""
    return {}


def _block_series(backend, quick):
    series = []
    for dtype in ("bfloat16", "float32"):
        for family in ("spade", "transformer"):
            changes = dict(text_config.QUICK_MODEL if quick else {}, dropout=0.0, position="none",
                           dtype=dtype, num_layers=1, global_layers=[0])
            impl = FULL_ATTENTION.get(backend, "blocked") if family == "transformer" else "blocked"
            if impl == "cudnn" and dtype != "bfloat16":
                impl = "blocked"  # cuDNN's fused attention takes bfloat16 / float16 only
            changes["attention_impl"] = impl
            if backend == "gpu":  # cuDNN's kernel runs causal: both blocks are (the LM setting)
                changes["causal"] = True
            series.append({"label": f"{family} {dtype}", "family": family, "dtype": dtype,
                           "impl": impl, "kwargs": {"model": text_config.text_model(
                               f"model={family}", **changes), "batch": 1}})
    return series


def blocks(args, header):
    rows = sweep.run(_block_series(header.get("backend"), args.quick), args.lengths, args,
                     "benchmarks.scaling:measure", runtime=header, until=args.until)
    lines = []
    for dtype in ("bfloat16", "float32"):
        for length in args.lengths:
            spade = find(rows, family="spade", dtype=dtype, length=length)
            full = find(rows, family="transformer", dtype=dtype, length=length)
            if all(r is not None and r["status"] == OK for r in (spade, full)):
                lines.append(f"{dtype} L={flags.length_label(length)}: full-attention block "
                             f"({full['impl']}) time / SPADE block time = "
                             f"{full['median_s'] / spade['median_s']:.2f}")
    return rows, [("Blocks: forward+backward, batch 1", report.markdown_table(rows, BLOCK_COLUMNS)),
                  ("SPADE block speed-up", "\n".join(f"- {x}" for x in lines) or "none measured")]


def s4(args, header):
    common = dict(op="layer", pass_="fwd+bwd", bidirectional=True,
                  d_state=8 if args.quick else 64)
    # First (the part's share may run out): issue 22's question for this platform, whether
    # S4D's chunked (matrix-product) mode beats its FFT mode, and both the DPLR layer, at the
    # issue's sizes and lengths (--quick: CPU sizes). Then the DPLR layer over all lengths.
    series = []
    for variant in S4_MODES:
        series.append({"label": f"S4 modes: {variant}", "variant": variant, "modes": True,
                       "lengths": args.lengths if args.quick else S4_MODES_LENGTHS,
                       "kwargs": dict(common, variant=variant, batch=2 if args.quick else 8,
                                      d_model=32 if args.quick else 256)})
    series.append({"label": "S4 layer (DPLR)", "kwargs": dict(
        common, variant="dplr", batch=1, d_model=32 if args.quick else 128)})
    rows = sweep.run(series, args.lengths, args, "benchmarks.ssm:measure", runtime=header,
                     until=args.until, side_by_side=False)  # the modes first, as said above
    length = ("length", lambda r: flags.length_label(r["length"]))
    by_length = [r for r in rows if not r.get("modes")]
    modes = [r for r in rows if r.get("modes")]
    lines = []
    for at in sorted({r["length"] for r in modes}):
        got = {v: find(modes, variant=v, length=at) for v in S4_MODES}
        if all(r is not None and r["status"] == OK for r in got.values()):
            lines.append(f"L={flags.length_label(at)}: " + ", ".join(
                f"{v} / diag (fft) time = {got[v]['median_s'] / got['diag']['median_s']:.2f}"
                for v in S4_MODES if v != "diag"))
    size = "batch 2, H 32" if args.quick else "batch 8, H 256"
    return rows, [
        ("S4 layer: forward+backward, batch 1", report.markdown_table(
            by_length, [length] + report.TIMING_COLUMNS[1:] + [TOKENS_COLUMN]
            + report.MEMORY_COLUMNS)),
        (f"S4 layer modes (issue 22): DPLR, S4D by FFT (diag), S4D chunked (T = "
         f"{CHUNK_SIZE}); forward+backward, bidirectional, {size}", report.markdown_table(
             modes, [("variant", lambda r: r["variant"])] + report.TIMING_COLUMNS
             + [TOKENS_COLUMN] + report.MEMORY_COLUMNS)),
        ("S4 modes against S4D's FFT mode", "\n".join(f"- {x}" for x in lines)
         or "none measured")]


def mfu(args, header):
    config = text_config.text_config("model=spade")
    if args.quick:
        config_builder.set_dotted(config.model, text_config.QUICK_MODEL, "config.model")
    batch, length = (2, 256) if args.quick else (config.batch_size, 4096)
    rows = sweep.run([{"label": "spade", "family": "spade", "kwargs": {
        "config": config.to_dict(), "batch": batch,
        "peak_sizes": [128, 256] if args.quick else [1024, 2048, 4096]}}], [length], args,
        "benchmarks.mfu:measure", runtime=header, until=args.until)
    peak = published_peak(header.get("device_kind"))
    for r in rows:
        if r["status"] == OK and peak:
            r["published_peak_flops"] = peak
            r["mfu_published"] = r["analytic_flops"] / r["median_s"] / (peak * r["devices"])
    against = (f"the published bfloat16 peak of a {header.get('device_kind')} "
               f"({peak / 1e12:.0f} TFLOP/s)" if peak else
               "the measured float32 matmul peak (no published peak for this device)")
    return rows, [(f"MFU of the Text training step (SPADE, L={flags.length_label(length)}, "
                   f"batch {batch}) against {against}", report.markdown_table(rows, [
                       ("step s", lambda r: report.fmt(r.get("median_s"), ".3f")),
                       TOKENS_COLUMN,
                       ("analytic TFLOP/s", lambda r: report.fmt(r.get("median_s") and report.div(
                           r["analytic_flops"] / r["median_s"], 1e12), ".3g")),
                       ("MFU %", lambda r: report.fmt(100 * r.get("mfu_published", r.get("mfu"))
                                                      if r.get("median_s") else None, ".1f"))]))]


def _tail(proc) -> str:
    """The last lines of a finished command's output, for an error message."""
    return " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])[-400:]


def listops(args, budget_s, out_dir):
    """Trains the full ListOps recipe's model on generated data for about budget_s seconds."""
    data = os.path.join(out_dir, "listops-data")
    num, length = (120, 40) if args.quick else (10_000, 2_000)  # 40: the smoke variant's
    start = time.perf_counter()
    generated = subprocess.run(
        [sys.executable, "-m", "lra.generate", "--task=listops", f"--out={data}", f"--num={num}",
         "--seed=0", f"--min_length={length // 10}", f"--max_length={length}"],
        cwd=ROOT, capture_output=True, text=True, timeout=budget_s)
    if generated.returncode != 0:
        raise RuntimeError(f"python -m lra.generate --task=listops: exit code "
                           f"{generated.returncode}: {_tail(generated)}")
    generate_s = time.perf_counter() - start
    workdir = os.path.join(out_dir, "listops-run")
    # compilation and the final evaluations take the rest
    train_s = max(budget_s - generate_s - (60 if args.quick else 120), 10)
    variant = ":smoke" if args.quick else ""
    command = [sys.executable, "-m", "lra.main", f"--config=configs/listops.py{variant}",
               f"--config.data_dir={data}", f"--workdir={workdir}",
               "--config.num_train_steps=1000000",
               f"--config.max_wall_s={train_s:.0f}", "--config.show_steps=False",
               "--config.eval_every=1000" if args.quick else "--config.eval_every=200",
               "--config.max_eval_batches=20", "--config.checkpoint_every=0"]
    if args.quick:
        command.append("--config.batch_size=8")
    else:  # the recipe's 3,000 warmup steps would take most of a few-minute time box
        command.append("--config.optimizer.warmup_steps=200")
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          timeout=budget_s + 300)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return [{"label": "listops", "status": ERROR, "wall_s": wall,
                 "detail": f"exit code {proc.returncode}: {_tail(proc)}"}], []
    from spade_jax.runtime import paths
    from spade_jax.train import metrics
    curve = [r for r in metrics.read_records(workdir) if r["split"] == "validation"]
    results = paths.read_json(os.path.join(workdir, "results.json"))
    row = {"label": "listops", "status": OK, "wall_s": wall, "steps": results["steps"],
           "validation_curve": [(r.get("elapsed_s"), r["step"], r["accuracy"]) for r in curve],
           "test_accuracy_at_best": results.get("test_accuracy_at_best"),
           "stopped_on_budget": results.get("stopped_on_budget")}
    table = "\n".join(["| seconds | step | validation accuracy % |", "|---|---|---|"] + [
        f"| {report.fmt(s, '.0f')} | {step} | {100 * acc:.2f} |"
        for s, step, acc in row["validation_curve"]])
    return [row], [(f"ListOps, the full recipe's model on generated data ({num:,} expressions "
                    f"up to {length} tokens), {train_s:.0f} s of training: "
                    f"{results['steps']} steps, test accuracy "
                    f"{100 * (row['test_accuracy_at_best'] or 0):.2f}% at the best validation "
                    f"step", table)]


TOKENS_COLUMN = ("tokens/s", lambda r: report.fmt(r.get("median_s") and
                                                  r["tokens"] / r["median_s"], ",.0f"))
BLOCK_COLUMNS = [("family", lambda r: r["family"]), ("dtype", lambda r: r["dtype"]),
                 ("attention", lambda r: r["impl"])] + report.TIMING_COLUMNS + [
    TOKENS_COLUMN] + report.MEMORY_COLUMNS


@cli.user_errors
def main(argv=None):
    p = flags.parser(__doc__, lengths="1K,2K,4K,8K,16K,32K,64K", quick_lengths="256",
                     repeats=3)
    p.add_argument("--budget_s", type=float, default=None,
                   help="the whole run's time budget (default 480; --quick 240)")
    flags.add_names(p, "--parts", tuple(PARTS))
    args = flags.parse(p, argv)
    if args.budget_s is not None and not args.budget_s > 0:  # (nan too) every part would skip
        p.error(f"--budget_s must be a positive number of seconds, got {args.budget_s}")
    args.budget_s = args.budget_s or (240.0 if args.quick else 480.0)
    out, header = report.start("reproduce", args)
    deadline = time.monotonic() + args.budget_s
    isolation.run_point("benchmarks.reproduce:platform", {}, timeout_s=120, runtime=header)
    print(f"reproduce: {header.get('backend', '?')} ({header.get('device_kind')} x"
          f"{header.get('device_count')}), budget {args.budget_s:.0f} s", file=sys.stderr)
    rows, sections, parts = [], [], {}
    for name in args.parts:
        share = args.budget_s * PARTS[name] / sum(PARTS[n] for n in args.parts)
        left = deadline - time.monotonic()
        budget = min(share, left)
        start = time.perf_counter()
        if budget < 10:
            parts[name] = {"status": SKIPPED, "detail": "the budget was spent"}
            continue
        # a point gets at most the part's budget, split over the part's points; no point of
        # the part starts after its share is spent
        args.timeout_s = max(min(600.0, budget / max(len(args.lengths), 1)), 30.0)
        args.until = time.monotonic() + budget
        try:
            if name == "listops":
                got, text = listops(args, budget, out)
            else:
                got, text = {"blocks": blocks, "s4": s4, "mfu": mfu}[name](args, header)
            status = (OK if all(r["status"] == OK for r in got)
                      else "partly: " + "; ".join(sorted({r["status"] for r in got})))
            parts[name] = {"status": status}
            rows += [dict(r, part=name) for r in got]
            sections += text
        except Exception as error:  # fail soft: report the part, run the next one
            parts[name] = {"status": ERROR, "detail": f"{type(error).__name__}: {error}"}
        parts[name]["seconds"] = round(time.perf_counter() - start, 1)
        print(f"reproduce: {name}: {parts[name]}", file=sys.stderr, flush=True)
    sections.insert(0, ("Parts", "\n".join(f"- {n}: {v['status']} ({v.get('seconds', 0)} s)"
                                           + (f": {v['detail']}" if v.get("detail") else "")
                                           for n, v in parts.items())))
    report.write_report(out, "reproduce", header=header, args=args, rows=rows,
                        sections=sections, data={"parts": parts})
    return 0 if all(v["status"] != ERROR for v in parts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
