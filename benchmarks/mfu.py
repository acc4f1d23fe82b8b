"""Model FLOPs utilisation of the LRA Text-sized training step (issue 7, `mfu`).

    python -m benchmarks.mfu [--lengths=4K] [--families=spade] [--batch=32] [--repeats=3]
                             [--peak_sizes=1024,2048,4096] [--quick]

One fresh process per (family, L) does what `python -m lra.main --config=configs/text.py` does
for a step: the Text config's model (4 layers x 128, radius 127, S4 d_state 64, dropout 0.1), its
AdamW with parameter groups and clipping, and `spade_jax.train.steps.make_train_step`, jitted with
the engine's shardings and a donated state, on random tokens (batch x L, all real). In the same
process it measures the float32 matmul peak (benchmarks.roofline.matmul_rates) before and after
timing the step (compile apart; median after warm-up) and keeps the higher reading, then asks XLA
for its FLOP count.

  analytic FLOPs   spade_jax.model.families.train_step_flops: 3 x forward; local attention by the keys
                   actually computed, the S4 FFT convolution per sequence and the S4 kernel
                   generation once per step (the breakdown table shows each term, forward)
  XLA FLOPs        compiled.cost_analysis()['flops'] of the training step and of the forward
                   pass alone: a cross-check (XLA also counts element-wise work, softmax and the
                   optimiser, and counts a while loop's body once: the chunked S4 kernel
                   generation runs in lax.map)
  MFU              analytic FLOPs per step / median step time / (measured float32 peak x devices)

Target (issue 7): SPADE at L = 4K reaches >= 25% of the measured float32 matmul peak.
"""
import sys

from benchmarks import flags, fit, plots, report, sweep, text_config, timing
from benchmarks.rows import OK, exit_code, find
from spade_jax.runtime import cli
from spade_jax.train import config_builder
from spade_jax.model import families
from spade_jax.model.config import ModelConfig

FAMILIES = tuple(families.FAMILIES)
TARGET_LENGTH = 4096


def xla_flops(compiled):
    """FLOPs from a compiled computation's cost_analysis() (a dict, or a list of dicts in some
    JAX versions); None when XLA gives none."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        values = [c.get("flops") for c in cost if c and c.get("flops") is not None]
        return float(sum(values)) if values else None
    if cost and cost.get("flops") is not None:
        return float(cost["flops"])
    return None


def forward_breakdown(cfg, length: int, batch: int) -> dict:
    """Analytic forward FLOPs of one step of `batch` sequences, by term (spade_jax.model.flops)."""
    from spade_jax.model import flops
    kinds = families.layer_kinds(cfg)
    total = families.forward_flops(cfg, length)
    s4_layers = sum(k in ("global", "s4") for k in kinds)
    attention = 0.0
    for kind in kinds:
        attends = families.mixer(kind).attends(cfg)  # the attention kind the layer runs
        if attends is not None:
            # scores and weighted values: 2 matmuls of 2 FLOPs per multiply-add
            attention += 2 * 2 * length * attends.keys(cfg, length) * cfg.d_model
    terms = {"attention scores and values": attention * batch,
             "S4 FFT convolution": s4_layers * flops.s4_conv_flops(cfg, length) * batch,
             "S4 kernel generation (once per step)": s4_layers * flops.s4_kernel_flops(cfg, length)}
    forward = total["per_sequence"] * batch + total["per_step_fixed"]
    terms = {"projections, FFN, combine and head": forward - sum(terms.values()), **terms}
    return dict(terms, total=forward)


def measure(config: dict, length: int, batch: int, peak_sizes, repeats: int, warmup: int,
            deadline=None) -> dict:
    """(In a point.) Peak, step time and FLOP counts of the training step of `config`."""
    import jax
    import ml_collections
    import numpy as np

    from benchmarks import roofline
    from lra.tasks import LRATask
    from spade_jax.train import sharding
    from spade_jax.train import job as job_lib

    def peak_matmuls():
        return roofline.matmul_rates(peak_sizes, ["float32"], repeats=max(repeats, 3),
                                     deadline=deadline)

    peak_rows = peak_matmuls()

    config = ml_collections.ConfigDict(config)
    config.model.max_len = config.data_options.max_length = length
    config.batch_size = batch
    cfg = ModelConfig.from_config(config.model)
    job = job_lib.build(config, LRATask(config.task, data_dir="",
                                        options=config.data_options.to_dict()))
    rng = np.random.default_rng(0)
    batch_np = {"inputs": rng.integers(1, cfg.vocab_size, (batch, length)).astype(np.int32),
                "mask": np.ones((batch, length), bool),
                "targets": rng.integers(0, cfg.num_classes, batch).astype(np.int32),
                "weights": np.ones(batch, np.float32)}
    state = job.create_state()
    placed = sharding.place_batch(batch_np, job.mesh)
    with job.context():
        compiled, compile_s = timing.compile_timed(job.train_step(), state, placed)
    holder = [state]

    def call():
        holder[0], metrics = compiled(holder[0], placed)
        jax.block_until_ready((holder[0], metrics))

    stats = timing.time_compiled(call, repeats, warmup, deadline)
    # The peak again, after the step: a reading taken while a neighbour used the machine is low
    # and would inflate MFU, so the higher of the two counts (seen: 73 against 125-145 GFLOP/s).
    peak_rows += peak_matmuls()
    peak = roofline.peaks(peak_rows)["float32"]
    with job.context():  # after timing: its compilation is not in the run peak
        forward = jax.jit(lambda p, inputs, mask: job.model.apply({"params": p}, inputs, mask))
        forward_xla = xla_flops(forward.lower(holder[0].params, placed["inputs"],
                                              placed["mask"]).compile())
    analytic = families.train_step_flops(cfg, length, batch)
    devices = jax.device_count()
    return dict(stats, compile_s=compile_s, tokens=batch * length, peak_flops=peak,
                peak_matmuls=peak_rows, devices=devices, analytic_flops=analytic,
                forward=forward_breakdown(cfg, length, batch), xla_flops=xla_flops(compiled),
                xla_forward_flops=forward_xla,
                mfu=analytic / stats["median_s"] / (peak * devices))


COLUMNS = [("family", lambda r: r["family"])] + report.TIMING_COLUMNS + [
    ("tokens/s", lambda r: report.fmt(r.get("median_s") and r["tokens"] / r["median_s"], ",.0f")),
    ("analytic GFLOP/step", lambda r: report.fmt(report.div(r.get("analytic_flops"), 1e9), ".4g")),
    ("XLA / analytic (step)", lambda r: report.fmt(
        report.div(r.get("xla_flops"), r.get("analytic_flops")), ".3f")),
    ("XLA / analytic (forward)", lambda r: report.fmt(
        report.div(r.get("xla_forward_flops"), (r.get("forward") or {}).get("total")), ".3f")),
    ("f32 peak GFLOP/s", lambda r: report.fmt(report.div(r.get("peak_flops"), 1e9), ".1f")),
    ("MFU %", lambda r: report.fmt(r.get("mfu") and 100 * r["mfu"], ".1f")),
] + report.MEMORY_COLUMNS


def breakdown_table(rows) -> str:
    done = [r for r in rows if r["status"] == OK]
    if not done:
        return "No step finished."
    terms = list(done[0]["forward"])
    table = [{"term": t, **{f"{r['label']} L={flags.length_label(r['length'])}": r["forward"][t]
                            for r in done}} for t in terms]
    columns = [("forward term", lambda x: x["term"])] + [
        (f"{name} GFLOP (%)", lambda x, name=name: f"{x[name] / 1e9:.4g} "
         f"({100 * x[name] / next(t[name] for t in table if t['term'] == 'total'):.1f}%)")
        for name in table[0] if name != "term"]
    return report.markdown_table(table, columns)


@cli.user_errors
def main(argv=None):
    p = flags.parser(__doc__, lengths="4K", quick_lengths="256", repeats=3)
    flags.add_names(p, "--families", FAMILIES, ["spade"])
    p.add_argument("--batch", type=int, default=None,
                   help="sequences per step (default: the Text config's 32; --quick 2)")
    p.add_argument("--peak_sizes", type=flags.parse_lengths, default=None,
                   help="matmul sizes for the peak (default 1024,2048,4096; --quick 128,256)")
    flags.add_config_overrides(p)
    args = flags.parse(p, argv)
    args.peak_sizes = args.peak_sizes or ([128, 256] if args.quick else [1024, 2048, 4096])
    quick = text_config.QUICK_MODEL if args.quick else {}
    series = []
    for family in args.families:
        config = text_config.text_config(f"model={family}")
        config_builder.set_dotted(config.model, quick, "config.model")
        config_builder.set_dotted(config, dict(args.set))
        ModelConfig.from_config(config.model)  # checked before any process starts
        args.batch = args.batch or (2 if args.quick else config.batch_size)
        series.append({"label": family, "family": family,
                       "kwargs": {"config": config.to_dict(), "batch": args.batch,
                                  "peak_sizes": args.peak_sizes}})
    out, header = report.start("mfu", args)
    rows = sweep.run(series, args.lengths, args, "benchmarks.mfu:measure",
                     runtime=header)
    at = TARGET_LENGTH if TARGET_LENGTH in args.lengths else max(args.lengths)
    spade = find(rows, family="spade", length=at)
    mfu_percent = spade and spade.get("mfu") and 100 * spade["mfu"]
    goals = [fit.target(
        f"MFU of the SPADE training step at L={flags.length_label(at)} (batch {args.batch}) "
        f"against the measured float32 matmul peak", mfu_percent, 25, higher_is_better=True,
        unit="%", missing=fit.why_missing({"spade": spade}))]

    def plot(path):
        plots.loglog_plot(path, [
            {"title": "training step throughput", "ylabel": "tokens per second", "guides": (),
             "series": plots.series_points(rows, lambda r: r.get("median_s") and
                                           r["tokens"] / r["median_s"])},
            {"title": "MFU (analytic FLOPs / measured float32 peak)", "ylabel": "MFU %",
             "guides": (), "series": plots.series_points(
                 rows, lambda r: r.get("mfu") and 100 * r["mfu"])}],
            f"LRA Text-sized training step, batch {args.batch}")

    report.write_report(out, "mfu", header=header, args=args, rows=rows, plot=plot, targets=goals,
                        sections=[(f"Training step, batch {args.batch}"
                                   f"{flags.overrides_label(args)}",
                                   report.markdown_table(rows, COLUMNS)),
                                  ("Analytic forward FLOPs by term", breakdown_table(rows))])
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
