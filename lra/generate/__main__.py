"""`python -m lra.generate --task=TASK --out=DIR [--num=N] [--seed=S] [task options]`.

Writes the task's files under DIR in the release layout (e.g. DIR/listops-1000/...); then
`lra.data.load_split(TASK, split, DIR)` reads them.
"""
import argparse
import sys
import time

from lra.generate import listops

TASKS = ("listops",)
DEFAULT_NUM = {"listops": 100_000}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lra.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--out", required=True, help="output folder (the data_dir to read)")
    parser.add_argument("--num", type=int, default=None,
                        help="number of examples (default: the release's size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min_length", type=int, default=500,
                        help="listops: keep trees longer than this (LRA: 500)")
    parser.add_argument("--max_length", type=int, default=2000,
                        help="listops: keep trees shorter than this (LRA: 2000)")
    args = parser.parse_args(argv)
    num = args.num if args.num is not None else DEFAULT_NUM[args.task]
    if num < 3:
        parser.error(f"--num must be >= 3 (train, validation and test need one each), got {num}")
    start = time.time()
    if args.task == "listops":
        paths = listops.write(args.out, num, args.seed, min_length=args.min_length,
                              max_length=args.max_length)
    print(f"lra.generate: wrote {num} {args.task} examples in {time.time() - start:.1f} s: "
          + ", ".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
