"""Run summaries and the LRA results table.

    python -m lra.report RUN_DIR [RUN_DIR ...] [--out=results.md] [--plot=accuracy.png]

Each run directory holds the results.json that `lra.main` (or `lm.main`) writes. --out is
replaced when it holds an earlier table of lra.report; any other existing file is refused. The LRA
table has the layout of the paper's LRA table (rows = models, columns = the registered tasks,
lra.data.specs.TASKS, and their average; test accuracy in % at the best-validation checkpoint);
runs of one model and task are grouped over their seeds (mean +- sample std, n = seeds). Then the wall times, the published
numbers, and ours beside SPADE's published per-task figures, S4, S5 and MEGA (figures not
confirmed against their paper are marked and footnoted). lm.main runs get a table of their
WikiText-103 perplexities beside the published ones. A run that is unfinished, garbled or not
lra.main's or lm.main's is skipped with a line saying why; only when no run is left is it an error.
"""
import argparse
import json
import math
import os
import statistics
import sys

from lra.data.specs import TASKS
from lra.published import PAPER_COLUMNS, PUBLISHED, PUBLISHED_LM, SOURCES, UNCONFIRMED
from spade_jax.runtime import cli, paths
from spade_jax.train import plots
from spade_jax.runtime.errors import DataError, PathError, UserError


def __getattr__(name):
    """TASK_ORDER: the names of the registered tasks, the tables' columns in order (read when
    used, so a task registered later has its column)."""
    if name == "TASK_ORDER":
        return tuple(TASKS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def finish_run(workdir, config, results, majority):
    """Writes the run's results.json (with task, model, config, majority-class accuracy) and its
    learning curve, and prints the outcome."""
    best = results.get("best", {})
    summary = {
        "task": config.task, "model": config.model_name, "variant": config.variant,
        "parameters": results["parameters"], "steps": results["steps"],
        "wall_time_s": results["wall_time_s"],
        "best_validation_accuracy": best.get("validation_score"),
        "best_step": best.get("step"),
        "test_accuracy_at_best": best.get("test", {}).get("accuracy"),
        "test_accuracy_at_last": results["last"]["test"].get("accuracy"),
        "majority_class_test_accuracy": majority,
        "stopped_on_budget": bool(results.get("stopped_on_budget")),
        "invocation_wall_time_s": results.get("invocation_wall_time_s"),
        "provenance": results.get("provenance"),
        "config": json.loads(config.to_json_best_effort()),
    }
    paths.write_json(paths.workdir_path(workdir) / "results.json", summary)
    plot_curve(workdir, summary)
    acc = summary["test_accuracy_at_best"]
    if config.variant == "smoke":
        print(f"{config.task} / {config.model_name}: smoke run finished: data, model, training, "
              f"checkpoints and evaluation all ran. A smoke run is {summary['steps']} steps of a "
              f"tiny model on a few examples: the accuracies below are not results.")
    invocations = summary["invocation_wall_time_s"] or []
    over = f" over {len(invocations)} invocations" if len(invocations) > 1 else ""
    print(f"{config.task} / {config.model_name}: test accuracy {100 * acc:.2f}% at the best "
          f"validation step {summary['best_step']} (last step: "
          f"{100 * summary['test_accuracy_at_last']:.2f}%); majority class {100 * majority:.2f}%; "
          f"{summary['parameters']:,} parameters, {summary['steps']} steps, "
          f"{summary['wall_time_s']:.0f} s{over}. Results: {paths.workdir_path(workdir) / 'results.json'}")
    return summary


def plot_curve(workdir, summary: dict | None = None):
    """WORKDIR/learning_curve.png (spade_jax.train.plots.learning_curve), titled from the run's
    summary (task, model, variant, parameters, steps) or, without one, its folder name."""
    s = summary or {}
    title = (plots.run_title(s["task"], s["model"], s.get("variant"), s.get("parameters"),
                             s.get("steps")) if "task" in s
             else os.path.basename(os.path.normpath(str(workdir))))
    return plots.learning_curve(workdir, title=title)


def plot_accuracy(run_dirs, path):
    """A bar chart of the LRA runs' test accuracy (%) per task and model, seeds grouped (mean,
    std, n), the majority class dashed: spade_jax.train.plots.grouped_bars. Returns the image's path."""
    lra, _, _ = collect(run_dirs)
    if not lra:
        raise DataError("--plot: no finished lra.main run among the runs given")
    groups, majority = {}, {}
    for _, r, _ in lra:
        title = TASKS[r["task"]].title if r["task"] in TASKS else r["task"]
        if r.get("test_accuracy_at_best") is not None:
            groups.setdefault(title, {}).setdefault(_name(r), []).append(
                100 * r["test_accuracy_at_best"])
        if _number(r.get("majority_class_test_accuracy")):
            majority[title] = 100 * r["majority_class_test_accuracy"]
    groups = {t: {name: _stats(v) for name, v in per.items()} for t, per in groups.items()}
    return plots.grouped_bars(groups, path, title="LRA test accuracy at the best-validation step",
                              ylabel="test accuracy (%)", reference=majority)


def _cell(value):
    return "-" if value is None else f"{value:.2f}"


def _row(name, values, last, fmt=_cell) -> str:
    """A markdown row: name, one cell per task, then `last` (the average or total cell)."""
    return f"| {name} | " + " | ".join(map(fmt, values)) + f" | {last} |"


def _average(values):
    """The mean over all the tasks, or None when one is missing."""
    return None if None in values else sum(values) / len(values)


def _number(value) -> bool:
    """A finite int or float (JSON's NaN and Infinity are not results)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _seed(run, results):
    """The config seed of a run: results.json's config, else the run's config.json; None when
    neither says."""
    config = results.get("config")
    if not isinstance(config, dict):
        try:
            config = paths.read_json(paths.workdir_path(run) / "config.json", expect=dict)
        except (UserError, OSError):
            config = {}
    seed = config.get("seed")
    return seed if _number(seed) else None


def _lm_results(r) -> bool:
    """Whether `r` is lm.main's results.json (it has perplexities)."""
    return any(_number(r.get(k)) for k in ("test_perplexity_best", "test_perplexity_last"))


def classify(run):
    """('lra' or 'lm', results) of one run directory; a UserError saying why it has no place in
    the tables (unfinished, garbled, another program's) otherwise."""
    folder = paths.workdir_path(run)
    path = folder / "results.json"
    if not folder.is_dir():
        raise PathError(f"{run} does not exist or is not a folder (no results.json to read)")
    if not path.exists():
        started = any((folder / name).exists() for name in ("config.json", "checkpoints"))
        raise PathError(f"{run} holds no results.json ("
                        + ("an unfinished run: rerun its command to resume it" if started
                           else "is it an lra.main or lm.main run directory that finished?")
                        + ")")
    try:
        r = paths.read_json(path, expect=dict)
    except OSError as e:
        raise PathError(f"cannot read {path} ({e.strerror or e})") from None
    if r.get("task") not in TASKS and _lm_results(r):
        return "lm", r
    missing = [k for k in ("task", "model", "test_accuracy_at_best", "wall_time_s") if k not in r]
    if missing or r["task"] not in TASKS:
        raise DataError(f"{path} is not an lra.main results file (no "
                        f"{missing or 'LRA task: ' + repr(r.get('task'))}) nor lm.main's (no "
                        f"perplexities)")
    acc, wall = r["test_accuracy_at_best"], r["wall_time_s"]
    if not isinstance(r["model"], str) or not _number(wall) or not (acc is None or _number(acc)):
        raise DataError(f"{path} has a model, test_accuracy_at_best or wall_time_s of the wrong "
                        f"type, or a number that is not finite (NaN, Infinity): model "
                        f"{r['model']!r}, test_accuracy_at_best {acc!r}, wall_time_s {wall!r}")
    return "lra", r


def collect(run_dirs):
    """(LRA runs, LM runs, skipped): the runs as (run, results, seed), the skipped ones as
    (run, the UserError saying why)."""
    lra, lm, skipped, seen = [], [], [], set()
    for run in run_dirs:
        where = os.path.realpath(run) if not paths.is_url(run) else str(run).rstrip("/")
        if where in seen:  # one run named twice (runs/a runs/a/, a link) counts once
            skipped.append((run, DataError(f"listed twice ({where}): counted once")))
            continue
        seen.add(where)
        try:
            kind, r = classify(run)
        except UserError as e:
            skipped.append((run, e))
            continue
        (lra if kind == "lra" else lm).append((run, r, _seed(run, r)))
    return lra, lm, skipped


def _name(r) -> str:
    return str(r["model"]) + plots.variant_suffix(r.get("variant"))


def _stats(values):
    """(mean, sample std or None, n) of the numbers in `values`; None when there are none."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else None
    return statistics.mean(values), std, len(values)


def _stat_cell(stats) -> str:
    """'-', the value of one seed, or 'mean ± std (n=seeds)'."""
    if stats is None:
        return "-"
    mean, std, n = stats
    return f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {std:.2f} (n={n})"


def _mean(stats):
    return None if stats is None else stats[0]


def _marked(name) -> str:
    return f"{name} {UNCONFIRMED[name][0]}" if name in UNCONFIRMED else name


def _footnotes(names) -> str:
    return "\n".join(f"{UNCONFIRMED[n][0]} {n}: {UNCONFIRMED[n][1]}" for n in names
                     if n in UNCONFIRMED)


def _sources(names) -> str:
    """Where each published row comes from (lra.published.SOURCES)."""
    return "Sources: " + "; ".join(f"{n}: {SOURCES[n]}" for n in names) + "."


def _duplicate_seeds(groups) -> list:
    """Lines naming the groups in which one config seed ran more than once."""
    lines = []
    for key, runs in groups.items():
        seeds = [seed for _, _, seed in runs if seed is not None]
        for seed in sorted({s for s in seeds if seeds.count(s) > 1}):
            same = [str(run) for run, _, s in runs if s == seed]
            lines.append(f"- note: {' / '.join(map(str, key))}: seed {seed} in {len(same)} runs "
                         f"({', '.join(same)}); they count as {len(same)} seeds")
    return lines


TABLE_START = "Our runs (test accuracy %"
COMPARED = ("SPADE (paper)", "S4 (v2)", "S5", "MEGA")


def _lra_tables(runs) -> str:
    tasks = list(TASKS)  # the columns, in registration order
    paper = [t for t in PAPER_COLUMNS[:-1] if t in TASKS]  # the average: the paper's tasks
    groups = {}
    for run, r, seed in runs:
        groups.setdefault((_name(r), r["task"]), []).append((run, r, seed))
    names = list(dict.fromkeys(name for name, _ in groups))
    accuracy = {key: _stats([None if r["test_accuracy_at_best"] is None
                             else 100 * r["test_accuracy_at_best"] for _, r, _ in g])
                for key, g in groups.items()}
    wall = {key: statistics.mean(r["wall_time_s"] for _, r, _ in g) for key, g in groups.items()}
    majority = {r["task"]: 100 * r["majority_class_test_accuracy"] for _, r, _ in runs
                if _number(r.get("majority_class_test_accuracy"))}
    header = ("| model | " + " | ".join(TASKS[t].title for t in tasks) + " | avg |\n"
              + "|---" * (len(tasks) + 2) + "|\n")
    rows = [_row(name, [accuracy.get((name, t)) for t in tasks],
                 _cell(_average([_mean(accuracy.get((name, t))) for t in paper])), _stat_cell)
            for name in names]
    values = [majority.get(t) for t in tasks]
    rows.append(_row("majority class", values, _cell(_average([majority.get(t) for t in paper]))))
    ours = header + "\n".join(rows)
    seconds = lambda v: "-" if v is None else f"{v:.0f}"
    times = header.replace("| avg |", "| total |") + "\n".join(
        _row(name, [wall.get((name, t)) for t in tasks],
             seconds(sum(w for (n, _), w in wall.items() if n == name)), seconds)
        for name in names)
    published = header + "\n".join(
        f"| {_marked(name)} | " + " | ".join(
            "fail" if vals.get(t) is None and name.startswith("Transformer") and t == "pathx"
            else _cell(vals.get(t)) for t in tasks + ["avg"]) + " |"
        for name, vals in PUBLISHED.items())
    columns = names + [_marked(n) for n in COMPARED]
    beside = ("| task | " + " | ".join(columns) + " |\n" + "|---" * (len(columns) + 1) + "|\n"
              + "\n".join(
                  f"| {TASKS[task].title} | " + " | ".join(
                      [_stat_cell(accuracy.get((name, task))) for name in names]
                      + [_cell(PUBLISHED[n].get(task)) for n in COMPARED]) + " |"
                  for task in tasks)
              + "\n| avg | " + " | ".join(
                  [_cell(_average([_mean(accuracy.get((name, t))) for t in paper]))
                   for name in names] + [_cell(PUBLISHED[n]["avg"]) for n in COMPARED]) + " |")
    notes = _duplicate_seeds(groups)
    return (f"{TABLE_START}, at the best-validation checkpoint; runs of one model and task "
            f"grouped by seed: mean ± sample std (n=seeds), one value for one seed; avg (of the "
            f"means, over the LRA paper's {len(paper)} tasks, as the published avg) only when "
            f"all of them ran):\n\n{ours}\n\n"
            + ("\n".join(notes) + "\n\n" if notes else "")
            + f"Wall time of each run (s, training and evaluation, the mean over seeds; total "
            f"over the tasks listed):\n\n{times}\n\n"
            f"Published (test accuracy %):\n\n{published}\n\n{_footnotes(PUBLISHED)}\n"
            f"{_sources(PUBLISHED)}\n\n"
            f"Ours beside SPADE's published figures, S4, S5 and MEGA (test accuracy %):\n\n"
            f"{beside}\n\n{_footnotes(COMPARED)}\n")


def _lm_table(runs) -> str:
    groups = {}
    for run, r, seed in runs:
        groups.setdefault(_name(r), []).append((run, r, seed))
    rows = []
    for name, g in groups.items():
        valid = _stats([r.get("validation_perplexity_best") for _, r, _ in g
                        if _number(r.get("validation_perplexity_best"))])
        test = _stats([r.get("test_perplexity_best") for _, r, _ in g
                       if _number(r.get("test_perplexity_best"))])
        seeds = sorted({seed for _, _, seed in g if seed is not None})
        rows.append(f"| {name} | {_stat_cell(valid)} | {_stat_cell(test)} | {len(g)}"
                    + (f" ({', '.join(map(str, seeds))})" if seeds else "") + " |")
    header = "| model | valid ppl | test ppl |"
    published = "\n".join(f"| {_marked(name)} | {_cell(v)} | {_cell(t)} |"
                          for name, (v, t) in PUBLISHED_LM.items())
    notes = _duplicate_seeds({(name,): g for name, g in groups.items()})
    return (f"Language model runs (lm.main; WikiText-103 perplexity per word token at the "
            f"best-validation checkpoint, mean ± sample std over seeds; '-' when no validation "
            f"ran):\n\n{header} runs (seeds) |\n|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            + ("\n".join(notes) + "\n\n" if notes else "")
            + f"Published (WikiText-103 perplexity; adaptive input and softmax):\n\n"
            f"{header}\n|---|---|---|\n{published}\n\n{_footnotes(PUBLISHED_LM)}\n"
            f"{_sources(PUBLISHED_LM)}\n")


def table(run_dirs) -> str:
    """Markdown: test accuracy at best validation per model and task, seeds grouped (with the
    majority-class accuracy of each task's test split), the wall time of each run, published
    numbers, ours beside SPADE's published figures and the SSM baselines; the LM runs' perplexities
    beside the published ones; then the runs skipped and why. Raises when no run is left."""
    lra, lm, skipped = collect(run_dirs)
    if not lra and not lm:
        if len(skipped) == 1:
            raise skipped[0][1]
        error = PathError if all(isinstance(e, PathError) for _, e in skipped) else DataError
        raise error("nothing to report: every run was skipped: "
                    + "; ".join(str(e) for _, e in skipped))
    text = _lra_tables(lra)
    if lm:
        text += "\n" + _lm_table(lm)
    lines = [f"- skipped {run}: {e}" for run, e in skipped]
    lines += [f"- not in the LRA tables: {run} is an lm.main run (task {r.get('task')!r}); see "
              f"the LM table" for run, r, _ in lm]
    if lines:
        text += "\nRuns left out of the LRA tables:\n\n" + "\n".join(lines) + "\n"
    return text


@cli.user_errors
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lra.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories written by lra.main or lm.main")
    parser.add_argument("--out", default="lra_results.md", help="markdown file to write")
    parser.add_argument("--plot", default="", metavar="PNG",
                        help="also draw the LRA runs' test accuracy per task and model into PNG")
    args = parser.parse_args(argv)
    if os.path.isdir(args.out):
        raise PathError(f"--out {args.out} is a folder; pass the markdown file to write")
    if os.path.exists(args.out):
        with open(args.out, "rb") as f:
            if not f.read(len(TABLE_START)) == TABLE_START.encode():
                raise PathError(f"--out {args.out} exists and is not a table of lra.report: it "
                                f"is never overwritten; choose another --out")
    text = table(args.runs)
    if args.plot:
        print(f"accuracy per task: {plot_accuracy(args.runs, args.plot)}")
    print(text)
    try:
        paths.write_bytes(args.out, text.encode())
    except OSError as e:
        raise PathError(f"cannot write --out {args.out} ({e.strerror or e})") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
