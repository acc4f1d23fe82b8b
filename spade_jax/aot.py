"""Will this job fit on a TPU slice, and how long will it take? Compiled here, without a TPU.

    python -m spade_jax.aot --config=configs/pathx.py --accelerator=v5litepod-8
    python -m spade_jax.aot --config=configs/wikitext103.py --accelerator=v4-32 \\
        --config.mesh.data=8 --config.mesh.tensor=2 --json=wt103-v4-32.json
    python -m spade_jax.aot --config=configs/listops.py:smoke --accelerator=v5litepod-8 --slices=2

The job is built exactly as `python -m lra.main` / `lm.main` build it (spade_jax.train.job: the
same validation, mesh, logical-axis rules, model, optimiser and batch layout; no data is read)
on libtpu's compile-only devices of the accelerator (spade_jax.runtime.accelerators), and its train
step, eval step and (language models) decode step are compiled by XLA's TPU compiler. Printed per
chip and per step (spade_jax.train.aot): parameters + optimiser state, batch, temporaries and
their total against the chip's HBM ("fits, X GiB free" / "does not fit by X GiB", with what to
change); FLOPs and bytes moved; the compiler's step-time estimate (an estimate, never a
measurement; shown only where it is sane) beside the roofline bound from the chip's published
peak FLOP/s and HBM bandwidth; the hours the recipe's training steps take at that time; the
collectives in the compiled program; where the train step's bytes go (its largest sources of
memory traffic, by the model's module path, forward and backward).

Needs libtpu (`pip install "jax[tpu]"`, installed by the test extra). Exit status: 0 every step
fits; 3 (EXIT_DOES_NOT_FIT) a step does not fit; 2 a user error (a bad flag or config, an
accelerator name it does not know); 1 a bug. --json=FILE writes the report (the keys are listed
in `report_json`).
"""
import os

# Compiling for a TPU needs no backend but libtpu's compile-only topology; keep JAX's runtime on
# the CPU (a TPU VM's chips stay free for its job).
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import sys  # noqa: E402

import jax  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from spade_jax.runtime import accelerators, cli, paths  # noqa: E402
from spade_jax.train import sharding  # noqa: E402
from spade_jax.runtime.errors import ConfigError  # noqa: E402
from spade_jax.train import aot, job as job_lib, provenance  # noqa: E402

EXIT_DOES_NOT_FIT = 3
STEPS = ("train", "eval", "decode")
GiB = 2**30


def define_flags(flag_values, argv):
    on = dict(flag_values=flag_values)
    config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/<task>.py"
                                    "[:argument]), as lra.main / lm.main take it.", lock_config=True,
                                    sys_argv=list(argv), **on)
    flags.DEFINE_string("accelerator", None, "Cloud TPU accelerator type: v4-8, v4-32, "
                        "v5litepod-8, v5litepod-256, v5p-8, v6e-8, ...", **on)
    flags.DEFINE_integer("slices", 1, "Slices of that type joined over the data-centre network "
                         "(multislice; config.mesh.dcn_data splits the batch over them).",
                         lower_bound=1, **on)
    flags.DEFINE_list("steps", list(STEPS), "Steps to compile (decode: language models only).", **on)
    flags.DEFINE_string("json", None, "Also write the report to this JSON file.", **on)
    flags.mark_flags_as_required(["config", "accelerator"], flag_values=flag_values)


def describe_bytes(n) -> str:
    if n is None:
        return "-"
    return f"{n / GiB:.2f} GiB" if n >= GiB / 10 else f"{n / 2**20:.1f} MiB"


def _seconds(s) -> str:
    if s is None:
        return "-"
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def _hours(h) -> str:
    return "-" if h is None else (f"{h:,.1f} h" if h >= 1 else f"{h * 60:.1f} min")


def recipe_hours(report: dict, steps: int):
    """Hours for `steps` training steps at the report's step time (None where there is none)."""
    return None if report.get("step_s") is None else report["step_s"] * steps / 3600


def advice(report: dict, job, chip) -> list:
    """What to change when the train step does not fit: the micro-batch per chip that should
    (temporaries scale with it; an estimate to compile again), and the other levers."""
    engine = job.engine
    data_parallel = sharding.data_parallel_size(job.mesh)
    micro = engine.batch_size // (data_parallel * engine.grad_accum_steps)
    lines = []
    refused = report.get("refused") or {}
    temp = report.get("temp_bytes", refused.get("needed_bytes"))
    hbm = refused.get("available_bytes") or chip.hbm_bytes  # the compiler's figure, if it said
    fixed = (report["state_bytes"] + report.get("code_bytes", 0))
    if temp and micro:
        rows = int((hbm - fixed) // (temp / micro))
        accum = next((a for a in range(engine.grad_accum_steps, engine.batch_size + 1)
                      if engine.batch_size % (data_parallel * a) == 0
                      and engine.batch_size // (data_parallel * a) <= rows), None)
        if rows >= 1 and accum is not None:
            lines.append(f"about {rows} rows per chip fit at once (now {micro}; temporaries scale "
                         f"with the rows): --config.grad_accum_steps={accum} keeps the batch of "
                         f"{engine.batch_size} ({engine.batch_size // (data_parallel * accum)} "
                         f"rows per chip per micro-batch); compile again to check")
        elif rows < 1:
            lines.append("not even one row per chip fits in this form")
    if job.model_cfg.remat != "all":
        lines.append(f"--config.model.remat=all (now {job.model_cfg.remat!r}): recompute "
                     f"activations in the backward pass instead of keeping them")
    if job.model_cfg.dtype != "bfloat16":
        lines.append("--config.model.dtype=bfloat16 (activations and matmuls)")
    lines.append("a larger slice, or --config.mesh.fsdp / --config.mesh.tensor to spread the "
                 "parameters and activations over more chips")
    return lines


def report_json(reports, job, accel, slices, config_arg) -> dict:
    """The report as JSON. Top level: accelerator, topology, slices, chips, hosts, mesh,
    batch_size, num_train_steps, hbm_per_chip_bytes, peak_flops_per_chip,
    hbm_bandwidth_per_chip, fits (every step), recipe_hours (the train step's), libtpu_version,
    jax_version, config, config_hash; `steps`: one record per compiled step with accelerator,
    chips, fits, hbm_per_chip_bytes, peak_memory_per_chip_bytes, flops_per_step,
    bytes_accessed_per_step (per chip), estimate_s (null when the compiler's estimate is
    unusable), roofline_s, step_s, time_basis, recipe_hours (train only), libtpu_version, the
    memory parts (state_bytes, batch_bytes, temp_bytes, ...), collectives, traffic (where the
    bytes go: spade_jax.train.aot.traffic) and compile_s."""
    chips = accel.chips * slices
    common = {"accelerator": accel.name, "chips": chips,
              "hbm_per_chip_bytes": accel.chip.hbm_bytes,
              "libtpu_version": accelerators.libtpu_version()}
    steps = []
    for report in reports:
        hours = recipe_hours(report, job.engine.num_train_steps) if report["step"] == "train" \
            else None
        steps.append({**common, **{k: report.get(k) for k in (
            "fits", "peak_memory_per_chip_bytes", "flops_per_step", "bytes_accessed_per_step",
            "estimate_s", "roofline_s")}, "recipe_hours": hours, **report})
    train = next((s for s in steps if s["step"] == "train"), None)
    return {**common, "topology": accel.topology, "slices": slices,
            "hosts": len({d.process_index for d in job.mesh.devices.flat}),
            "mesh": {k: int(v) for k, v in job.mesh.shape.items()},
            "batch_size": job.engine.batch_size, "num_train_steps": job.engine.num_train_steps,
            "peak_flops_per_chip": accel.chip.peak_flops,
            "hbm_bandwidth_per_chip": accel.chip.hbm_bandwidth,
            "fits": all(s["fits"] for s in steps),
            "recipe_hours": train and train["recipe_hours"],
            "jax_version": jax.__version__, "config": config_arg,
            "config_hash": provenance.config_hash(job.config), "steps": steps}


def _collectives(report) -> str:
    found = report.get("collectives") or []
    return ", ".join(f"{c['kind']} x{c['count']} ({c['bytes'] / 2**20:,.1f} MiB)"
                     for c in found) or "none"


def _decimal_bytes(n) -> str:
    return f"{n / 1e9:,.2f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def _traffic(report, top: int = 8) -> list:
    """The step's largest memory traffic by source (spade_jax.train.aot.traffic)."""
    found = report["traffic"]
    lines = [f"where the bytes go ({report['step']} step; {_decimal_bytes(found['bytes'])} "
             f"counted of the compiler's {_decimal_bytes(report['bytes_accessed_per_step'])}, "
             f"{_decimal_bytes(found['hbm_bytes'])} of them in HBM, the rest in on-chip VMEM):"]
    lines += [f"  {_decimal_bytes(s['bytes']):>11}  (HBM {_decimal_bytes(s['hbm_bytes'])})  "
              f"{s['source']}" for s in found["sources"][:top]]
    return lines


def render(result: dict, reports, job) -> str:
    """The report as text (see the module docstring)."""
    engine, config = job.engine, job.config
    per_chip = engine.batch_size // sharding.data_parallel_size(job.mesh)
    mesh = " x ".join(f"{k} {v}" for k, v in result["mesh"].items())
    lines = [f"{result['config']} ({config.get('task')} / {config.get('model_name')}, "
             f"{config.get('variant')}) on {result['accelerator']}"
             + (f" x {result['slices']} slices" if result["slices"] > 1 else "")
             + f": {result['topology']}, {result['chips']} chips, {result['hosts']} host(s); "
             f"libtpu {result['libtpu_version']}",
             f"mesh {mesh}; batch {engine.batch_size} ({per_chip} rows per chip"
             + (f", {engine.grad_accum_steps} micro-batches" if engine.grad_accum_steps > 1 else "")
             + f"); {engine.num_train_steps:,} training steps; per chip and per step:"]
    table = [["", *[r["step"] for r in reports]]]

    def row(title, fn):
        table.append([title, *[fn(r) for r in reports]])

    row("state (train: + optimiser)", lambda r: describe_bytes(r["state_bytes"]))
    row("batch (decode: cache)", lambda r: describe_bytes(r["batch_bytes"]))
    row("temporaries", lambda r: describe_bytes(
        r["temp_bytes"] if "temp_bytes" in r else r["refused"]["needed_bytes"]))
    row("total", lambda r: describe_bytes(r.get("peak_memory_per_chip_bytes")))
    row("HBM per chip", lambda r: describe_bytes(result["hbm_per_chip_bytes"]))
    row("fits", lambda r: (f"yes, {r['free_bytes'] / GiB:.2f} GiB free" if r["fits"] else
                           "NO, refused by the compiler" if r.get("refused") else
                           f"NO, over by {-r['free_bytes'] / GiB:.2f} GiB"))
    row("GFLOP", lambda r: "-" if "flops_per_step" not in r else f"{r['flops_per_step'] / 1e9:,.1f}")
    row("GB moved (HBM)", lambda r: "-" if "bytes_accessed_per_step" not in r
        else f"{r['bytes_accessed_per_step'] / 1e9:,.2f}")
    row("FLOP per byte", lambda r: "-" if not r.get("bytes_accessed_per_step")
        else f"{r['flops_per_step'] / r['bytes_accessed_per_step']:.1f}")
    row("roofline bound", lambda r: _seconds(r.get("roofline_s"))
        + (f" ({r['bound_by']}-bound)" if r.get("bound_by") else ""))
    row("compiler's estimate", lambda r: _seconds(r.get("estimate_s")) if r.get("estimate_s")
        else ("unusable" if "compiler_optimal_s" in r else "-"))
    row("compiled in", lambda r: f"{r['compile_s']:.0f} s")
    widths = [max(len(str(c[i])) for c in table) for i in range(len(table[0]))]
    lines += ["  " + "   ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
              for cells in table]
    for report in reports:
        if report.get("collectives") is not None:
            lines.append(f"collectives ({report['step']}): {_collectives(report)}")
        if report.get("refused"):
            lines.append(f"the compiler ({report['step']}): {report['refused']['message']}")
    train = next((r for r in reports if r["step"] == "train" and r.get("traffic")), None)
    if train is not None:
        lines += _traffic(train)
    train = next((r for r in result["steps"] if r["step"] == "train"), None)
    if train and train.get("recipe_hours") is not None:
        lines.append(f"recipe: {engine.num_train_steps:,} steps x {_seconds(train['step_s'])} "
                     f"({train['time_basis']}) = {_hours(train['recipe_hours'])} of training "
                     f"(evaluation and checkpoints not counted; an estimate until a TPU measures "
                     f"it: python -m benchmarks.reproduce)")
    return "\n".join(lines)


def main(FLAGS) -> int:
    accel = accelerators.parse(FLAGS.accelerator)
    unknown = sorted(set(FLAGS.steps) - set(STEPS))
    if unknown:
        raise ConfigError(f"--steps: unknown step(s) {unknown}; choose from {list(STEPS)}")
    config = FLAGS.config
    task = job_lib.task_from_config(config)
    devices = accelerators.topology_devices(accel, FLAGS.slices)
    hosts = len({d.process_index for d in devices})
    job = job_lib.build(config, task, devices=devices, process_count=hosts)
    reports = aot.compile_steps(job, accel.chip, FLAGS.steps)
    config_arg = config_flags.get_config_filename(FLAGS["config"])
    result = report_json(reports, job, accel, FLAGS.slices, config_arg)
    print(render(result, reports, job), flush=True)
    if FLAGS.json:
        paths.write_json(FLAGS.json, result)
    if result["fits"]:
        return 0
    train = next((r for r in reports if r["step"] == "train" and not r["fits"]), None)
    if train is not None:
        print("to make the train step fit:\n" + "\n".join(
            f"  - {line}" for line in advice(train, job, accel.chip)), flush=True)
    print(f"does not fit on {accel.name} (exit status {EXIT_DOES_NOT_FIT})", flush=True)
    return EXIT_DOES_NOT_FIT


def run(argv) -> int:
    """The command line `python -m spade_jax.aot ARGS` (argv[0] is the program), in this process."""
    return cli.run_absl(argv, define_flags, main, __doc__)


if __name__ == "__main__":
    sys.exit(run(sys.argv))
