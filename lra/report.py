"""Run summaries and the LRA results table.

    python -m lra.report RUN_DIR [RUN_DIR ...] [--out=results.md]

Each run directory holds the results.json that `lra.main` writes. --out is replaced when it holds
an earlier table of lra.report; any other existing file is refused. The table has the layout of the
paper's LRA table (rows = models, columns = the six tasks and their average, test accuracy in %
at the best-validation checkpoint), followed by published numbers for comparison.
"""
import argparse
import io
import json
import os
import sys

from spade_jax import cli, paths
from spade_jax.errors import DataError, PathError

TASK_ORDER = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
TASK_TITLES = ("ListOps", "Text", "Retrieval", "Image", "Pathfinder", "Path-X")
# Published test accuracies (%), from the papers (see ../shared/reference/lra.md); None = failed
# or not reported.
PUBLISHED = {
    "Transformer (LRA paper)": (36.37, 64.27, 57.46, 42.44, 71.40, None, 54.39),
    "S4 (v2)": (59.60, 86.82, 90.90, 88.65, 94.20, 96.35, 86.09),
    "S5": (62.15, 89.31, 91.40, 88.00, 95.33, 98.58, 87.46),
    "MEGA": (63.14, 90.43, 91.25, 90.44, 96.01, 97.98, 88.21),
    "MEGA-chunk": (58.76, 90.19, 90.97, 85.80, 94.41, 93.81, 85.66),
    "SPADE (aggregator, unverified)": (None, 86.29, None, None, None, None, 87.4),
}


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
        "config": json.loads(config.to_json_best_effort()),
    }
    paths.write_json(paths.workdir_path(workdir) / "results.json", summary)
    plot_curve(workdir)
    acc = summary["test_accuracy_at_best"]
    print(f"{config.task} / {config.model_name}: test accuracy {100 * acc:.2f}% at the best "
          f"validation step {summary['best_step']} (last step: "
          f"{100 * summary['test_accuracy_at_last']:.2f}%); majority class {100 * majority:.2f}%; "
          f"{summary['parameters']:,} parameters, {summary['steps']} steps, "
          f"{summary['wall_time_s']:.0f} s. Results: {paths.workdir_path(workdir) / 'results.json'}")
    return summary


def plot_curve(workdir):
    """WORKDIR/learning_curve.png: training loss and validation accuracy against the step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spade_jax.train import metrics
    train, valid = {}, {}
    for r in metrics.read_records(workdir):
        if r.get("split") == "train" and "loss" in r:
            train[r["step"]] = r["loss"]
        elif r.get("split") == "validation" and "accuracy" in r:
            valid[r["step"]] = r["accuracy"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(sorted(train), [train[s] for s in sorted(train)], label="train loss", color="C0")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if valid:
        ax2 = ax.twinx()
        ax2.plot(sorted(valid), [valid[s] for s in sorted(valid)], "o-", color="C1",
                 label="validation accuracy")
        ax2.set_ylabel("accuracy")
    ax.set_title(os.path.basename(os.path.normpath(workdir)))
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=100)
    plt.close(fig)
    path = paths.workdir_path(workdir) / "learning_curve.png"
    paths.write_bytes(path, image.getvalue())
    return path


def _cell(value):
    return "-" if value is None else f"{value:.2f}"


def _row(name, values, last, fmt=_cell) -> str:
    """A markdown row: name, one cell per task, then `last` (the average or total cell)."""
    return f"| {name} | " + " | ".join(map(fmt, values)) + f" | {last} |"


def _average(values):
    """The mean over all six tasks, or None when one is missing."""
    return None if None in values else sum(values) / len(values)


def read_results(run_dirs) -> list:
    """The results.json of each run directory, checked."""
    results = []
    for run in run_dirs:
        path = paths.workdir_path(run) / "results.json"
        if not path.exists():
            raise PathError(f"{run} holds no results.json (is it an lra.main run directory that "
                            f"finished?)")
        r = paths.read_json(path, expect=dict)
        missing = [k for k in ("task", "model", "test_accuracy_at_best", "wall_time_s")
                   if k not in r]
        if missing or r["task"] not in TASK_ORDER:
            raise DataError(f"{path} is not an lra.main results file (no {missing or 'LRA task'}"
                            f"; lm.main runs are not in this table)")
        results.append(r)
    return results


TABLE_START = "Our runs (test accuracy %"


def table(run_dirs) -> str:
    """Markdown: test accuracy at best validation per model and task (with the majority-class
    accuracy of each task's test split), the wall time of each run, and published numbers."""
    accuracy, wall, majority = {}, {}, {}
    for r in read_results(run_dirs):
        name = r["model"] + ("" if r.get("variant", "full") == "full" else f" ({r['variant']})")
        acc = r["test_accuracy_at_best"]
        accuracy.setdefault(name, {})[r["task"]] = None if acc is None else 100 * acc
        wall.setdefault(name, {})[r["task"]] = r["wall_time_s"]
        if r.get("majority_class_test_accuracy") is not None:
            majority[r["task"]] = 100 * r["majority_class_test_accuracy"]
    header = "| model | " + " | ".join(TASK_TITLES) + " | avg |\n" + "|---" * 8 + "|\n"
    rows = [(name, [scores.get(t) for t in TASK_ORDER]) for name, scores in accuracy.items()]
    rows.append(("majority class", [majority.get(t) for t in TASK_ORDER]))
    ours = header + "\n".join(_row(name, v, _cell(_average(v))) for name, v in rows)
    seconds = lambda v: "-" if v is None else f"{v:.0f}"
    times = header.replace("| avg |", "| total |") + "\n".join(
        _row(name, [w.get(t) for t in TASK_ORDER], seconds(sum(w.values())), seconds)
        for name, w in wall.items())
    published = header + "\n".join(
        f"| {name} | " + " | ".join("fail" if v is None and name.startswith("Transformer") and i == 5
                                    else _cell(v) for i, v in enumerate(vals)) + " |"
        for name, vals in PUBLISHED.items())
    return (f"{TABLE_START}, at the best-validation checkpoint; avg only when all six "
            f"tasks ran):\n\n{ours}\n\nWall time of each run (s, training and evaluation; "
            f"total over the tasks listed):\n\n{times}\n\n"
            f"Published (test accuracy %):\n\n{published}\n")


@cli.user_errors
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lra.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories written by lra.main")
    parser.add_argument("--out", default="lra_results.md", help="markdown file to write")
    args = parser.parse_args(argv)
    if os.path.isdir(args.out):
        raise PathError(f"--out {args.out} is a folder; pass the markdown file to write")
    if os.path.exists(args.out):
        with open(args.out, "rb") as f:
            if not f.read(len(TABLE_START)) == TABLE_START.encode():
                raise PathError(f"--out {args.out} exists and is not a table of lra.report: it "
                                f"is never overwritten; choose another --out")
    text = table(args.runs)
    print(text)
    try:
        paths.write_bytes(args.out, text.encode())
    except OSError as e:
        raise PathError(f"cannot write --out {args.out} ({e.strerror or e})") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
