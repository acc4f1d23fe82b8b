"""`python -m lra.generate --task=TASK --out=DIR [--num=N] [--seed=S] [task options]`.

Writes the task's files under DIR in the release layout (e.g. DIR/listops-1000/...); then
`lra.data.load_split(TASK, split, DIR)` reads them. The task's folder is written into a
temporary folder inside DIR and renamed into place when complete; one that already holds data
(e.g. the real release's) is refused unless --overwrite is given. listops, pathfinder and pathx are the LRA
generators; text, retrieval and image are offline stand-ins in the real formats (aclImdb,
tsv_data, cifar-10-batches-bin) for testing the pipeline, NOT the benchmark data.
--num: listops: total examples; pathfinder/pathx: images; text: reviews per split (train and
test); retrieval: pairs over all splits (80/10/10); image: records over the 5 training
batches and the test batch.
`python -m lra.generate --stats FOLDER [FOLDER ...]` prints the per-image statistics of the
Pathfinder / Path-X PNGs under each folder (a release difficulty folder, generated ones, any
folder of PNGs) beside the original generator's, to compare them.
"""
import argparse
import os
import sys
import time

from lra.generate import listops, pathfinder, standins
from spade_jax import cli, paths
from spade_jax.errors import PathError

TASKS = ("listops", "pathfinder", "pathx", "text", "retrieval", "image")
DEFAULT_NUM = {"listops": 100_000, "pathfinder": 200_000, "pathx": 200_000, "text": 25_000,
               "retrieval": 20_000, "image": 60_000}


# The folder under --out that each task writes (pathfinder / pathx: see `target`).
FOLDERS = {"listops": "listops-1000", "text": "aclImdb", "retrieval": "tsv_data",
           "image": "cifar-10-batches-bin"}


def image_size(args) -> int:
    return args.image_size or {"pathfinder": 32, "pathx": 128}[args.task]


def target(args) -> str:
    """The folder, relative to --out, that the command writes."""
    if args.task in FOLDERS:
        return FOLDERS[args.task]
    return os.path.join(f"pathfinder{image_size(args)}", args.difficulty)


def write(args, out: str, num: int) -> None:
    """Writes the task's folder under `out`."""
    if args.task == "listops":
        listops.write(out, num, args.seed, min_length=args.min_length, max_length=args.max_length)
    elif args.task == "text":
        standins.write_text(out, num, args.seed)
    elif args.task == "retrieval":
        standins.write_retrieval(out, num, args.seed)
    elif args.task == "image":
        standins.write_image(out, num, args.seed)
    else:
        pathfinder.write(out, num, args.seed, image_size=image_size(args),
                         difficulty=args.difficulty, per_folder=args.per_folder,
                         processes=args.processes)


@cli.user_errors
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lra.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS, help="required unless --stats")
    parser.add_argument("--out", help="output folder (the data_dir to read); required unless "
                        "--stats")
    parser.add_argument("--num", type=int, default=None,
                        help="number of examples (default: the release's size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min_length", type=int, default=500,
                        help="listops: keep trees longer than this (LRA: 500)")
    parser.add_argument("--max_length", type=int, default=2000,
                        help="listops: keep trees shorter than this (LRA: 2000)")
    parser.add_argument("--image_size", type=int, default=None, choices=sorted(pathfinder.PRESETS),
                        help="pathfinder/pathx: 32, 64, 128 or 256 (default 32 / 128)")
    parser.add_argument("--difficulty", default="curv_contour_length_14",
                        choices=pathfinder.DIFFICULTIES, help="pathfinder/pathx")
    parser.add_argument("--per_folder", type=int, default=1000,
                        help="pathfinder/pathx: images per imgs/<k> folder and metadata file")
    parser.add_argument("--processes", type=int, default=None,
                        help="pathfinder/pathx: worker processes (default: all cores)")
    parser.add_argument("--grid", default=None,
                        help="pathfinder/pathx: also save a PNG grid of samples with labels here")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the task's folder under --out (and --grid) if it exists")
    parser.add_argument("--stats", nargs="+", metavar="FOLDER", default=None,
                        help="print the per-image statistics of the PNGs under each FOLDER (e.g. "
                        "the release's pathfinder32/curv_contour_length_14, or generated ones) "
                        "beside the original Pathfinder generator's, and exit")
    parser.add_argument("--stats_images", type=int, default=1000,
                        help="--stats: at most this many images per folder (0: all)")
    args = parser.parse_args(argv)
    if args.stats:
        if args.stats_images < 0:
            parser.error("--stats_images must be >= 0")
        print(pathfinder.stats_report(args.stats, args.stats_images))
        return 0
    if not (args.task and args.out):
        parser.error("--task and --out are required (unless --stats)")
    num = args.num if args.num is not None else DEFAULT_NUM[args.task]
    if num < 3:
        parser.error(f"--num must be >= 3 (train, validation and test need one each), got {num}")
    if args.task == "listops" and not 0 <= args.min_length < args.max_length - 1:
        parser.error(f"--min_length ({args.min_length}) must be >= 0 and below --max_length - 1 "
                     f"({args.max_length - 1}): trees are kept when min_length < length < "
                     f"max_length")
    if args.per_folder < 1 or args.processes is not None and args.processes < 1:
        parser.error("--per_folder and --processes must be >= 1")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise PathError(f"--out {args.out} is a file; pass a folder (new or existing)")
    folder = os.path.join(args.out, target(args))
    paths.refuse_existing([folder] + ([args.grid] if args.grid else []), args.overwrite)
    start = time.time()
    with paths.temp_folder(args.out, ".lra-generate-", "the generated data",
                           "pass an --out you can write") as tmp:
        write(args, tmp, num)
        paths.publish(os.path.join(tmp, target(args)), folder, tmp)
    written = [folder]
    if args.grid:
        written.append(pathfinder.save_grid(folder, args.grid))
    seconds = time.time() - start
    print(f"lra.generate: wrote {num} {args.task} examples in {seconds:.1f} s "
          f"({num / seconds:.0f}/s): " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
