"""bfloat16 against float32 compute, trained side by side: does a run with model.dtype='bfloat16'
(parameters and optimiser state float32; activations, matmuls and attention in bfloat16; the S4
kernel and its FFT convolution in float32) reach the float32 run's accuracy?

    python -m benchmarks.dtype                      # ListOps quick run, ~15 min on 2 CPU cores
    python -m benchmarks.dtype --config=configs/image.py:quick --out=DIR

Trains the config twice, float32 then bfloat16, same seed and data, each by `python -m lra.main`
in its work folder under --out (default benchmarks/results/dtype/<time>; a run found there
resumes, a finished one only reports), and writes there
dtype.json and dtype.md: each run's test accuracy (at its best validation step), wall time and
examples scored, the difference, and the noise: the standard error of a difference between two
accuracies measured on that many test examples, sqrt(2 p (1 - p) / n). bfloat16 passes when
the difference is within two standard errors. Exit status 0 passes, 1 does not, 2 a run failed.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

from benchmarks import ROOT


def train(config: str, dtype: str, workdir: str) -> dict:
    """One run of lra.main; its results.json."""
    command = [sys.executable, "-m", "lra.main", f"--config={config}", f"--workdir={workdir}",
               f"--config.model.dtype={dtype}"]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        test = [r for r in map(json.loads, f) if r.get("split", "").startswith("test")]
    return {"dtype": dtype, "test_accuracy": results["test_accuracy_at_best"],
            "scored": int(test[-1]["scored"]), "wall_s": results["wall_time_s"],
            "steps": results["steps"]}


def compare(runs: list) -> dict:
    """The bfloat16 run's accuracy against the float32 one's, with the noise of the difference."""
    f32, bf16 = runs
    p = (f32["test_accuracy"] + bf16["test_accuracy"]) / 2
    n = min(f32["scored"], bf16["scored"])
    noise = math.sqrt(2 * p * (1 - p) / n)
    difference = bf16["test_accuracy"] - f32["test_accuracy"]
    return {"difference": difference, "standard_error": noise,
            "within_noise": abs(difference) <= 2 * noise}


def markdown(config: str, runs: list, verdict: dict) -> str:
    lines = [f"# bfloat16 against float32: `{config}`", "",
             "| model.dtype | test accuracy | examples | steps | wall |", "|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['dtype']} | {r['test_accuracy']:.4f} | {r['scored']} | {r['steps']} "
                     f"| {r['wall_s']:.0f} s |")
    lines += ["", f"bfloat16 - float32: {verdict['difference']:+.4f}; standard error of the "
              f"difference {verdict['standard_error']:.4f}: "
              + ("within two standard errors." if verdict["within_noise"] else
                 "NOT within two standard errors."), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/listops.py:quick")
    parser.add_argument("--out", default=os.path.join(
        ROOT, "benchmarks", "results", "dtype", time.strftime("%Y%m%d-%H%M%S")))
    args = parser.parse_args(argv)
    try:
        runs = [train(args.config, dtype, os.path.join(args.out, dtype))
                for dtype in ("float32", "bfloat16")]
    except subprocess.CalledProcessError as e:
        print(f"benchmarks.dtype: a run failed (exit status {e.returncode}): {' '.join(e.cmd)}",
              file=sys.stderr)
        return 2
    verdict = compare(runs)
    with open(os.path.join(args.out, "dtype.json"), "w") as f:
        json.dump({"config": args.config, "runs": runs, **verdict}, f, indent=1)
    text = markdown(args.config, runs, verdict)
    with open(os.path.join(args.out, "dtype.md"), "w") as f:
        f.write(text)
    print(text)
    return 0 if verdict["within_noise"] else 1


if __name__ == "__main__":
    sys.exit(main())
