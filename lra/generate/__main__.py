"""`python -m lra.generate --task=TASK --out=DIR [--num=N] [--seed=S] [task options]`.

Writes the task's files under DIR in the release layout (e.g. DIR/listops-1000/...); then
`lra.data.load_split(TASK, split, DIR)` reads them. listops, pathfinder and pathx are the LRA
generators; text, retrieval and image are offline stand-ins in the real formats (aclImdb,
tsv_data, cifar-10-batches-bin) for testing the pipeline, NOT the benchmark data.
--num: listops: total examples; pathfinder/pathx: images; text: reviews per split (train and
test); retrieval: pairs over all splits (80/10/10); image: records over the 5 training
batches and the test batch.
"""
import argparse
import sys
import time

from lra.generate import listops, pathfinder, standins

TASKS = ("listops", "pathfinder", "pathx", "text", "retrieval", "image")
DEFAULT_NUM = {"listops": 100_000, "pathfinder": 200_000, "pathx": 200_000, "text": 25_000,
               "retrieval": 20_000, "image": 60_000}


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
    parser.add_argument("--image_size", type=int, default=None,
                        help="pathfinder/pathx: 32, 64, 128 or 256 (default 32 / 128)")
    parser.add_argument("--difficulty", default="curv_contour_length_14",
                        choices=pathfinder.DIFFICULTIES, help="pathfinder/pathx")
    parser.add_argument("--per_folder", type=int, default=1000,
                        help="pathfinder/pathx: images per imgs/<k> folder and metadata file")
    parser.add_argument("--processes", type=int, default=None,
                        help="pathfinder/pathx: worker processes (default: all cores)")
    parser.add_argument("--grid", default=None,
                        help="pathfinder/pathx: also save a PNG grid of samples with labels here")
    args = parser.parse_args(argv)
    num = args.num if args.num is not None else DEFAULT_NUM[args.task]
    if num < 3:
        parser.error(f"--num must be >= 3 (train, validation and test need one each), got {num}")
    start = time.time()
    if args.task == "listops":
        paths = listops.write(args.out, num, args.seed, min_length=args.min_length,
                              max_length=args.max_length)
    elif args.task == "text":
        paths = [standins.write_text(args.out, num, args.seed)]
    elif args.task == "retrieval":
        paths = [standins.write_retrieval(args.out, num, args.seed)]
    elif args.task == "image":
        paths = [standins.write_image(args.out, num, args.seed)]
    else:
        size = args.image_size or {"pathfinder": 32, "pathx": 128}[args.task]
        root = pathfinder.write(args.out, num, args.seed, image_size=size,
                                difficulty=args.difficulty, per_folder=args.per_folder,
                                processes=args.processes)
        paths = [root]
        if args.grid:
            paths.append(pathfinder.save_grid(root, args.grid))
    seconds = time.time() - start
    print(f"lra.generate: wrote {num} {args.task} examples in {seconds:.1f} s "
          f"({num / seconds:.0f}/s): "
          + ", ".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
