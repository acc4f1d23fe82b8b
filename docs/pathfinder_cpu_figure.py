"""Measures and draws docs/pathfinder_cpu.png: Pathfinder-32 learning curves on the 2-core CPU.

    python -m docs.pathfinder_cpu_figure sample PID WORKDIR       # beside a running lra.main
    python -m docs.pathfinder_cpu_figure draw WORKDIR [WORKDIR ...] [--out PNG]

`sample` polls the CPU time (user + system, threads and child processes included) of the
process PID (an `lra.main` run writing WORKDIR) every --interval seconds and appends one JSON
line {wall_s, cpu_s, step} to WORKDIR.cpu.jsonl (beside the workdir, not in it), where step is
the last training step logged in WORKDIR/metrics.jsonl; it stops when the process ends. CPU
time, not wall time, is the budget on a machine shared with other jobs.

`draw` plots, for each workdir, validation accuracy against the step and against CPU-minutes
(the CPU time of the first sample at which the step had been logged: an upper bound, at most one
log interval late), and the training loss (a moving mean over 5 logged steps) against the step;
it prints one markdown table per run (step, CPU-minutes, validation accuracy, train loss) and
the test accuracy of results.json.
"""
import argparse
import json
import os
import time

import numpy as np

from spade_jax.train import metrics

OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pathfinder_cpu.png")
SMOOTH = 5  # logged training steps in the loss's moving mean


def samples_path(workdir: str) -> str:
    return os.path.normpath(workdir) + ".cpu.jsonl"


def _tree_cpu_s(process) -> float:
    import psutil
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:  # a child that ended between the listing and the read
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _last_train_step(workdir: str) -> int:
    return max((r["step"] for r in metrics.read_records(workdir) if r.get("split") == "train"),
               default=0)


def sample(pid: int, workdir: str, interval: float = 15.0) -> str:
    """Appends {wall_s, cpu_s, step} to WORKDIR.cpu.jsonl every `interval` s while PID runs."""
    import psutil
    process, start, out = psutil.Process(pid), time.time(), samples_path(workdir)
    while process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
        try:
            record = dict(wall_s=round(time.time() - start, 1), cpu_s=round(_tree_cpu_s(process), 1),
                          step=_last_train_step(workdir))
        except psutil.Error:  # the process ended during the read
            break
        with open(out, "a") as f:
            f.write(json.dumps(record) + "\n")
        time.sleep(interval)
    return out


def cpu_minutes_at(workdir: str, steps) -> np.ndarray:
    """CPU-minutes of the run when each of `steps` had been logged, shape [len(steps)]; NaN where
    there is no sample (no WORKDIR.cpu.jsonl, or a step after the last sample)."""
    first = {}  # step -> CPU seconds of the first sample that saw it
    if os.path.exists(samples_path(workdir)):
        with open(samples_path(workdir)) as f:
            for line in f:
                r = json.loads(line)
                first.setdefault(r["step"], r["cpu_s"])
    known = sorted(first)
    out = np.full(len(steps), np.nan)
    for i, step in enumerate(steps):
        later = [s for s in known if s >= step]
        if later:
            out[i] = first[later[0]] / 60
    return out


def curves(workdir: str) -> dict:
    """{'name', 'valid': [(step, accuracy)], 'train': [(step, loss)], 'results': dict | None}."""
    records = metrics.read_records(workdir)
    results_file = os.path.join(workdir, "results.json")
    results = json.load(open(results_file)) if os.path.exists(results_file) else None
    return dict(name=os.path.basename(os.path.normpath(workdir)),
                valid=sorted((r["step"], r["accuracy"]) for r in records
                             if r.get("split") == "validation"),
                train=sorted((r["step"], r["loss"]) for r in records
                             if r.get("split") == "train" and "loss" in r),
                results=results)


def table(workdir: str) -> str:
    """A markdown table of the run's validation curve, with the smoothed training loss."""
    c = curves(workdir)
    steps = [s for s, _ in c["valid"]]
    cpu = cpu_minutes_at(workdir, steps)
    train = dict(c["train"])
    lines = [f"{c['name']}:", "", "| step | CPU-min | validation accuracy | train loss (mean of "
             f"last {SMOOTH} logs) |", "|---|---|---|---|"]
    for (step, acc), minutes in zip(c["valid"], cpu):
        recent = [train[s] for s in sorted(train) if s <= step][-SMOOTH:]
        loss = f"{np.mean(recent):.3f}" if recent else "-"
        cpu = "-" if np.isnan(minutes) else f"{minutes:.1f}"
        lines.append(f"| {step} | {cpu} | {100 * acc:.1f}% | {loss} |")
    if c["results"]:
        r = c["results"]
        lines += ["", f"test accuracy {100 * r['test_accuracy_at_best']:.1f}% at the best "
                      f"validation step {r['best_step']} (last: {100 * r['test_accuracy_at_last']:.1f}"
                      f"%); majority class {100 * r['majority_class_test_accuracy']:.1f}%; "
                      f"{r['parameters']:,} parameters; stopped_on_budget {r['stopped_on_budget']}"]
    return "\n".join(lines)


def draw(workdirs, path: str = OUTPUT) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_step, by_cpu, loss) = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, workdir in enumerate(workdirs):
        c = curves(workdir)
        steps = [s for s, _ in c["valid"]]
        acc = [100 * a for _, a in c["valid"]]
        by_step.plot(steps, acc, "o-", color=f"C{i}", label=c["name"], markersize=3)
        by_cpu.plot(cpu_minutes_at(workdir, steps), acc, "o-", color=f"C{i}", label=c["name"],
                    markersize=3)
        if c["train"]:
            s, v = zip(*c["train"])
            n = min(SMOOTH, len(v))
            smooth = np.convolve(v, np.ones(n) / n, mode="valid")
            loss.plot(s[n - 1:], smooth, color=f"C{i}", label=c["name"])
    for ax in (by_step, by_cpu):
        ax.axhline(65, color="gray", linestyle="--", linewidth=0.8)
        ax.axhline(50, color="gray", linestyle=":", linewidth=0.8)
        ax.set_ylabel("validation accuracy (%)")
    by_step.set_xlabel("step")
    by_cpu.set_xlabel("CPU-minutes (process time, all threads)")
    loss.set_xlabel("step")
    loss.set_ylabel(f"train loss (mean of {SMOOTH} logs)")
    by_step.legend(fontsize=8)
    fig.suptitle("Pathfinder-32 (generated curv_baseline) on a 2-core CPU; "
                 "dashed: 65%, dotted: chance", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", help="record a running lra.main's CPU time")
    s.add_argument("pid", type=int)
    s.add_argument("workdir")
    s.add_argument("--interval", type=float, default=15.0)
    d = sub.add_parser("draw", help="plot and tabulate finished or running workdirs")
    d.add_argument("workdirs", nargs="+")
    d.add_argument("--out", default=OUTPUT)
    args = parser.parse_args(argv)
    if args.command == "sample":
        print(sample(args.pid, args.workdir, args.interval))
    else:
        for workdir in args.workdirs:
            print(table(workdir) + "\n")
        print(draw(args.workdirs, args.out))


if __name__ == "__main__":
    main()
