"""Writes docs/tpu.md: every recipe compiled for Cloud TPU slices by `python -m spade_jax.aot`
(on this machine, no TPU needed), and the estimated TPU hours column of the README's
reproduction table.

    python -m docs.tpu_report                     # compiles what changed, rewrites the pages
    python -m docs.tpu_report --groups=recipes --dry-run   # what would be compiled
    python -m docs.tpu_report --render            # rewrite the pages from the kept results only

Each compile is one `python -m spade_jax.aot ... --json` process (a full Path-X step takes 2-5
minutes on 2 cores; run it in the background). Its result is kept in docs/tpu_compiles.json,
keyed by the hash of what the compile depends on (the config, overrides included, less the
fields of logging, data location and checkpoint cadence: `compile_hash`), the
accelerator, slices, steps and the libtpu and jax versions: rerunning recompiles only the entries
whose key changed (--force: all of them), and keeps the file after every compile, so a stopped
run loses nothing. A recipe whose batch the slice's data-parallel devices do not divide is
compiled with the mesh that keeps its batch (spade_jax.train.defaults.mesh_keeping_batch), as
the table notes.
"""
import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import jax

from spade_jax.runtime import accelerators
from spade_jax.train import config_builder
from spade_jax.model import attention_flash, families
from spade_jax.model.ssm import layer as ssm_layer
from spade_jax.model.config import ModelConfig
from spade_jax.runtime.errors import ConfigError
from spade_jax.train import defaults, job as job_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "docs", "tpu.md")
RESULTS = os.path.join(ROOT, "docs", "tpu_compiles.json")
README = os.path.join(ROOT, "README.md")
LRA_TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
GiB = 2**30


@dataclasses.dataclass(frozen=True)
class Entry:
    """One compile: a config (path[:argument]) with overrides on an accelerator."""

    group: str
    config: str
    accelerator: str
    overrides: tuple = ()  # ((dotted field, value), ...)
    steps: str = "train,eval,decode"
    slices: int = 1
    label: str = ""  # what the entry is, in its table

    def argv(self) -> list:
        return ([f"--config={self.config}", f"--accelerator={self.accelerator}",
                 f"--slices={self.slices}", f"--steps={self.steps}"]
                + [f"--config.{k}={v}" for k, v in self.overrides])


def entries() -> list:
    """Everything docs/tpu.md shows, in the order it is compiled (SPADE's recipes and the
    side-by-side comparisons first: the README's column and the TPU defaults rest on them)."""
    tasks = LRA_TASKS + ("wikitext103",)
    recipes = {family: [Entry("recipes", f"configs/{task}.py:model={family}", "v5litepod-8")
                        for task in tasks
                        if task != "wikitext103" or family in families.lm_families()]
               for family in families.FAMILIES}
    out = list(recipes["spade"])
    for accelerator in ("v5litepod-8", "v4-8"):
        for side in (64, 128):  # Path-X's model at 4K and 16K tokens
            for label, changes in COMPARISONS:
                out.append(Entry("compare", "configs/pathx.py", accelerator,
                                 (("data_options.image_size", side),) + changes, steps="train",
                                 label=label))
    out += [e for family in families.FAMILIES if family != "spade" for e in recipes[family]]
    for per_chip in (20, 24, 28):  # Path-X's largest batch per v5e chip (the recipe: 16)
        out.append(Entry("batch", "configs/pathx.py", "v5litepod-8",
                         (("batch_size", 8 * per_chip),), steps="train",
                         label=f"{per_chip} rows per chip"))
    # two slices at the recipe's 16 rows per chip: the per-chip memory should be one slice's
    out.append(Entry("multislice", "configs/pathx.py", "v5litepod-8", (("batch_size", 256),),
                     slices=2, steps="train"))
    for accelerator in ("v4-32", "v5litepod-32"):
        out.append(Entry("lm", "configs/wikitext103.py", accelerator))
    for accelerator in ("v4-8", "v5p-8", "v6e-8"):
        for task in tasks:
            out.append(Entry("spade", f"configs/{task}.py", accelerator, steps="train"))
    return out


# Side by side on the Path-X SPADE step (the TPU defaults). S4's chunked mode exists for the
# diagonal kernel (S4D) only, so it is compared with S4D by FFT; the relative-position bias is
# off in the last two, since splash takes none: their difference is the kernel's alone (the
# blocked one named: the default, 'auto', would pick splash there).
COMPARISONS = (
    ("recipe (S4 DPLR, its convolution a DFT of matrix products; flash attention with the T5 "
     "bias; float32)", ()),
    ("blocked attention with the T5 bias", (("model.attention_impl", "blocked"),)),
    ("S4D by FFT", (("model.s4.kernel", "diag"),)),
    ("S4D chunked", (("model.s4.kernel", "diag"), ("model.s4.mode", "chunked"))),
    ("bfloat16 compute", (("model.dtype", "bfloat16"),)),
    ("no bias, blocked attention", (("model.position", "none"),
                                    ("model.attention_impl", "blocked"))),
    ("no bias, splash attention", (("model.position", "none"),
                                   ("model.attention_impl", "splash"))),
)


def _devices(name: str, slices: int, cache={}):
    if (name, slices) not in cache:
        cache[name, slices] = accelerators.topology_devices(accelerators.parse(name), slices)
    return cache[name, slices]


def resolve(entry: Entry) -> tuple:
    """(entry with the mesh that keeps its batch where needed, config hash, note)."""
    path, _, arg = entry.config.partition(":")
    config = config_builder.load(os.path.join(ROOT, path), arg or None)
    config_builder.set_dotted(config, dict(entry.overrides))
    devices = _devices(entry.accelerator, entry.slices)
    hosts = len({d.process_index for d in devices})
    note = ""
    try:
        defaults.validate(config, len(devices), hosts)
    except ConfigError:
        mesh = defaults.mesh_keeping_batch(config.batch_size, config.grad_accum_steps,
                                           len(devices), hosts)
        if mesh is None:
            raise
        changes = tuple((f"mesh.{k}", v) for k, v in mesh.items())
        config_builder.set_dotted(config, dict(changes))
        entry = dataclasses.replace(entry, overrides=entry.overrides + changes)
        note = (f"batch {config.batch_size} kept with mesh data {mesh['data']} x tensor "
                f"{mesh['tensor']}")
    with contextlib.redirect_stdout(io.StringIO()):  # (its note on the LM's vocabulary)
        job_lib.task_from_config(config)  # the LM's vocabulary, as the command sets it
    return entry, compile_hash(config), note


# Fields that do not change the compiled steps or the report (where data lives, logging,
# checkpoint cadence, the seed, the variant's name): a change there recompiles nothing.
NOT_COMPILED = ("variant", "data_dir", "data_cache_dir", "generate", "show_steps", "log_every",
                "eval_every", "checkpoint_every", "keep_checkpoints", "async_checkpoints",
                "max_wall_s", "profile_steps", "peak_flops", "seed", "max_eval_batches",
                "skip_window", "max_skipped_fraction")


def compile_hash(config) -> str:
    """The hash of what a compile depends on: the config less NOT_COMPILED, and the source of
    this repository's own TPU code paths that it runs (the flash attention kernels, the S4
    layer's DFT convolution): a change there compiles those entries again (the versions name
    everything else)."""
    values = json.loads(config.to_json_best_effort())
    for name in NOT_COMPILED + ("provenance",):
        values.pop(name, None)
    model = ModelConfig.from_config(config.model)
    forms = set(families.relative_bias_kinds(model).values())
    sources = []
    if model.attention_impl == "flash" or (model.attention_impl == "auto" and "window" in forms):
        sources.append(attention_flash.__file__)
    if {"global", "s4"} & set(families.layer_kinds(model)):  # the mixers that run an S4 layer
        sources.append(ssm_layer.__file__)
    for path in sources:
        with open(path, "rb") as f:
            values[f"source:{os.path.basename(path)}"] = hashlib.sha256(f.read()).hexdigest()
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def versions() -> tuple:
    """(libtpu, jax) versions installed here: part of every result's key."""
    return accelerators.libtpu_version(), jax.__version__


def key(entry: Entry, config_hash: str, made_with: tuple) -> str:
    blob = json.dumps([config_hash, entry.accelerator, entry.slices, entry.steps, *made_with])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def compile_entry(entry: Entry, timeout: float) -> dict:
    """Runs the command for one entry; {'status', 'report' or 'error', 'wall_s'}."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "report.json")
        started = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-m", "spade_jax.aot", *entry.argv(),
                                   f"--json={out}"], cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": None, "error": f"not compiled within {timeout:.0f} s",
                    "wall_s": timeout}
        result = {"status": done.returncode, "wall_s": time.perf_counter() - started}
        if os.path.exists(out):
            with open(out) as f:
                result["report"] = json.load(f)
        else:
            lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            result["error"] = "\n".join(lines[-6:])
        return result


def load_results() -> dict:
    if not os.path.exists(RESULTS):
        return {}
    with open(RESULTS) as f:
        return json.load(f)


def save_results(results: dict) -> None:
    tmp = RESULTS + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, RESULTS)


def keys_of(selected, made_with: tuple | None = None) -> dict:
    """{entry: (resolved entry, config hash, note, key)} (configs loaded, nothing compiled);
    made_with: the (libtpu, jax) versions of the keys (default: those installed here)."""
    made_with = versions() if made_with is None else made_with
    out = {}
    for entry in selected:
        resolved, config_hash, note = resolve(entry)
        out[entry] = (resolved, config_hash, note, key(resolved, config_hash, made_with))
    return out


def run(resolved: dict, results: dict, *, force: bool, dry_run: bool, timeout: float) -> None:
    """Compiles the entries of `resolved` (see keys_of) whose key is not in `results` (all with
    `force`), saving `results` after each."""
    todo = [v for v in resolved.values()  # (a compile that ran out of time is tried again)
            if force or v[3] not in results or results[v[3]].get("status") is None]
    # the language model's compiles (16 x 1024, a 267k vocabulary) take 10-30 minutes each on
    # 2 cores: after every other entry
    todo.sort(key=lambda v: "wikitext103" in v[0].config)
    for i, (entry, config_hash, note, k) in enumerate(todo):
        print(f"[{i + 1}/{len(todo)}] {' '.join(entry.argv())}", flush=True)
        if dry_run:
            continue
        result = compile_entry(entry, timeout)
        result.update(entry=dataclasses.asdict(entry), note=note, config_hash=config_hash)
        results[k] = result
        save_results(results)
        print(f"    exit {result['status']} in {result['wall_s']:.0f} s", flush=True)


# --- the page ------------------------------------------------------------------------------

def _gib(n) -> str:
    return "-" if n is None else f"{n / GiB:.2f}"


def _time(s) -> str:
    if s is None:
        return "-"
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def _hours(h) -> str:
    return "-" if h is None else f"{h:,.1f}"


def _step(result, name="train"):
    report = (result or {}).get("report") or {}
    return next((s for s in report.get("steps", []) if s["step"] == name), None)


def _verdict(result) -> str:
    if result is None:
        return "not compiled yet"
    if result.get("status") is None:  # ran out of time on this machine: no verdict
        return (result.get("error") or "not compiled") + " here: no verdict"
    if "report" not in result:
        return "FAILS: " + (result.get("error") or "").splitlines()[-1][:160]
    steps = result["report"]["steps"]
    bad = [s["step"] for s in steps if not s["fits"]]
    return "fits" if not bad else "does NOT fit (" + ", ".join(bad) + ")"


def _basis(step) -> str:
    return {"compiler estimate": "est.", "roofline": "roofline"}.get(step.get("time_basis"), "")


def recipe_table(rows) -> list:
    lines = ["| config | accelerator | fits | GiB per chip (train / eval) | train step | basis | "
             "recipe hours | FLOP/byte | note |", "|---|---|---|---|---|---|---|---|---|"]
    for entry, result in rows:
        train, evaluation = _step(result), _step(result, "eval")
        flop_byte = (f"{train['flops_per_step'] / train['bytes_accessed_per_step']:.1f}"
                     if train and train.get("bytes_accessed_per_step") else "-")
        flags = "".join(f" --config.{k}={v}" for k, v in entry.overrides
                        if not k.startswith("mesh."))
        where = (f"{entry.slices} x " if entry.slices > 1 else "") + entry.accelerator
        lines.append(
            f"| `{entry.config}{flags}` | {where} | {_verdict(result)} | "
            f"{_gib(train and train['peak_memory_per_chip_bytes'])} / "
            f"{_gib(evaluation and evaluation['peak_memory_per_chip_bytes'])} | "
            f"{_time(train and train.get('step_s'))} | {train and _basis(train) or '-'} | "
            f"{_hours(train and train.get('recipe_hours'))} | {flop_byte} | "
            f"{(result or {}).get('note', '')} |")
    return lines


def compare_table(rows) -> list:
    lines = ["| accelerator | tokens | variant | GiB per chip | GB moved | train step | basis | "
             "x recipe |", "|---|---|---|---|---|---|---|---|"]
    base = {}
    for entry, result in rows:
        train = _step(result)
        side = dict(entry.overrides)["data_options.image_size"]
        where = (entry.accelerator, side)
        if train and entry.label.startswith("recipe"):
            base[where] = train.get("step_s")
        if train is None:
            lines.append(f"| {entry.accelerator} | {side * side // 1024}K | {entry.label} | "
                         f"{_verdict(result)} | - | - | - | - |")
            continue
        ratio = f"{train['step_s'] / base[where]:.2f}" if base.get(where) else "-"
        lines.append(
            f"| {entry.accelerator} | {side * side // 1024}K | {entry.label} | "
            f"{_gib(train['peak_memory_per_chip_bytes'])} | "
            f"{train['bytes_accessed_per_step'] / 1e9:.1f} | {_time(train.get('step_s'))} | "
            f"{_basis(train)} | {ratio} |")
    return lines


def render(selected, keys, results) -> str:
    rows = {g: [(e, results.get(keys.get(e))) for e in selected if e.group == g]
            for g in ("recipes", "spade", "lm", "batch", "multislice", "compare")}
    versions = {r["report"]["libtpu_version"] for r in results.values() if "report" in r}
    out = [
        "# The recipes on Cloud TPU, compiled here",
        "",
        "<!-- Generated by `python -m docs.tpu_report` from docs/tpu_compiles.json; do not edit. -->",
        "",
        f"Every recipe compiled for TPU slices by `python -m spade_jax.aot` on a CPU machine, with "
        f"libtpu {', '.join(sorted(versions)) or '-'}: nothing ran on a TPU. Per chip: the memory "
        "the compiled train and eval steps need (parameters, optimiser state, batch, temporaries; "
        "against 16 GiB on v5e, 32 on v4 and v6e, 95 on v5p); the train step's time is XLA's own "
        "estimate (`optimal_seconds`, **est.**) where it is sane, else the roofline bound from the "
        "chip's published peak bfloat16 FLOP/s and HBM bandwidth (**roofline**: a floor, not a "
        "prediction); recipe hours = the recipe's training steps at that time (evaluation and "
        "checkpoints not counted). These are the compiler's estimates until a TPU measures them "
        "(`python -m benchmarks.reproduce` on the chip). FLOP/byte: the train step's FLOPs over "
        "its HBM bytes (a v5e chip's ridge point is about 240).",
        "",
        "## Every task and family on v5litepod-8 (8 v5e chips)",
        "",
        *recipe_table(rows["recipes"]),
        "",
        "## SPADE's recipes on v4-8, v5p-8 and v6e-8",
        "",
        *recipe_table(rows["spade"]),
        "",
        "## WikiText-103 on larger slices",
        "",
        "Its batch of 24 blocks does not divide over 16 or 32 chips: the mesh keeps it (8-way data "
        "parallelism, the rest tensor-parallel), as `python -m spade_jax.aot` advises.",
        "",
        *recipe_table(rows["lm"]),
        "",
        "## Path-X: the largest batch per v5e chip",
        "",
        "The SPADE recipe's train step at more rows per chip (v5litepod-8; the recipe has 16).",
        "",
        "| rows per chip | batch | fits | GiB per chip | train step | basis |",
        "|---|---|---|---|---|---|",
    ]
    recipe = next(((e, r) for e, r in rows["recipes"] if e.config == "configs/pathx.py:model=spade"),
                  None)
    batches = ([(16, recipe[1])] if recipe else []) + [
        (dict(e.overrides)["batch_size"] // 8, r) for e, r in rows["batch"]]
    for per_chip, result in batches:
        train = _step(result)
        out.append(f"| {per_chip} | {per_chip * 8} | {_verdict(result)} | "
                   f"{_gib(train and train['peak_memory_per_chip_bytes'])} | "
                   f"{_time(train and train.get('step_s'))} | {train and _basis(train) or '-'} |")
    fitting = [per_chip for per_chip, r in batches if r and "report" in r and r["report"]["fits"]]
    if fitting:
        out += ["", f"Largest that fits among those compiled: **{max(fitting)} rows per chip**."]
    out += ["", "## Two slices (multislice)", "",
            "The Path-X recipe on two v5litepod-8 slices joined over the data-centre network "
            "(`--slices=2`: the data axis spans the slices, `config.mesh.dcn_data`), at the "
            "recipe's 16 rows per chip (batch 256), beside the one-slice recipe: the batch per "
            "chip is the same, so the memory per chip should be no more than one slice's; the "
            "gradients' all-reduce now also crosses the slices.", "",
            *recipe_table([r for r in rows["recipes"]
                           if r[0].config == "configs/pathx.py:model=spade"] + rows["multislice"]),
            "",
            "## S4 mode, attention kernel and compute dtype, side by side", "",
            "The Path-X SPADE train step (batch 128) at 4K (64 x 64 images) and 16K tokens; x "
            "recipe: the step time over the recipe's on the same chip and length. The last two "
            "rows drop the relative-position bias (splash attention takes none), so the kernel "
            "is their only difference.", "", *compare_table(rows["compare"]), ""]
    return "\n".join(out)


README_HEADER = "est. TPU hours (v5litepod-8)"


def readme_with_hours(text: str, selected, keys, results) -> str:
    """The README's text with its reproduction table's estimated-hours column filled from the
    SPADE recipes' results."""
    hours = {}
    for entry in selected:
        if entry.group == "recipes" and entry.config.endswith(":model=spade"):
            train = _step(results.get(keys.get(entry)))
            task = entry.config.split("/")[1].split(".")[0]
            if train and train.get("recipe_hours") is not None:
                hours[task] = f"{train['recipe_hours']:,.1f} ({_basis(train)})"
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("| task | command | SPADE's recipe"):
            if README_HEADER not in line:
                lines[i] = line + f" {README_HEADER} |"
                lines[i + 1] = lines[i + 1] + "---|"
            for j in range(i + 2, len(lines)):
                if not lines[j].startswith("|"):
                    break
                match = re.search(r"configs/(\w+)\.py", lines[j])
                cells = lines[j].rstrip().rstrip("|").rstrip().split(" | ")
                value = hours.get(match.group(1), "-") if match else "-"
                if len(cells) == 5:
                    cells.append(value)
                else:
                    cells[-1] = value
                lines[j] = " | ".join(cells).rstrip() + " |"
            break
    return "\n".join(lines)


def pages(results: dict | None = None, made_with: tuple | None = None) -> dict:
    """{path: text} of docs/tpu.md and README.md as the kept results compiled with `made_with`
    (libtpu, jax) make them (default: the versions most of the kept results were compiled with,
    so that the pages can be checked where other versions are installed)."""
    results = load_results() if results is None else results
    made = [(r["report"]["libtpu_version"], r["report"]["jax_version"])
            for r in results.values() if "report" in r]
    if made_with is None and made:
        made_with = max(set(made), key=made.count)
    everything = entries()
    keys = {e: v[3] for e, v in keys_of(everything, made_with).items()}
    with open(README) as f:
        readme = f.read()
    return {OUTPUT: render(everything, keys, results),
            README: readme_with_hours(readme, everything, keys, results)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", default="", help="comma-separated groups to compile "
                        "(recipes, spade, lm, batch, multislice, compare); default all")
    parser.add_argument("--force", action="store_true", help="recompile even kept results")
    parser.add_argument("--dry-run", action="store_true", help="list what would be compiled")
    parser.add_argument("--render", action="store_true", help="compile nothing; rewrite pages")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per compile")
    parser.add_argument("--check", action="store_true", help="exit 1 if the pages are not "
                        "what the kept results make (compiles nothing)")
    args = parser.parse_args(argv)
    if args.check:
        stale = [path for path, text in pages().items() if open(path).read() != text]
        for path in stale:
            print(f"{path} is out of date: run python -m docs.tpu_report --render")
        return 1 if stale else 0
    groups = set(filter(None, args.groups.split(",")))
    resolved = keys_of(entries())
    results = load_results()
    if not args.render:
        run({e: v for e, v in resolved.items() if not groups or e.group in groups}, results,
            force=args.force, dry_run=args.dry_run, timeout=args.timeout)
    if args.dry_run:
        return 0
    for path, text in pages(results, versions()).items():
        with open(path, "w") as f:
            f.write(text)
    print(f"wrote {OUTPUT} and the README's {README_HEADER!r} column")
    return 0


if __name__ == "__main__":
    sys.exit(main())
