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

from lra.data.specs import TASKS, resolve
from lra.generate import pathfinder
from spade_jax.runtime import cli, paths
from spade_jax.runtime.errors import PathError


def generated_tasks() -> dict:
    """{name: TaskSpec} of the registered tasks that have a generator, in registration order."""
    return {name: spec for name, spec in TASKS.items() if spec.generator is not None}


def add_option_flags(parser, tasks) -> None:
    """One `--<name>` flag per generator option of `tasks` (options of the same name share it;
    its default is None: the task's own default applies)."""
    takers = {}
    for spec in tasks.values():
        for option in spec.generator.options:
            takers.setdefault(option.name, []).append((spec.name, option))
    for name, given in takers.items():
        option = given[0][1]
        defaults = ", ".join(f"{task} {o.default}" for task, o in given if o.default is not None)
        choices = option.choices if option.choices is None else sorted(resolve(option.choices))
        parser.add_argument(f"--{name}", type=option.type, default=None, choices=choices,
                            help=f"{', '.join(task for task, _ in given)}: {option.help}"
                            + (f" (default: {defaults})" if defaults else ""))


def task_options(parser, args, spec) -> dict:
    """The generator options of `spec` from the flags (the task's default where not given);
    parser.error for a flag the task does not take or a value below its minimum."""
    names = {o.name for o in spec.generator.options}
    others = sorted(o.name for s in generated_tasks().values() for o in s.generator.options
                    if o.name not in names and getattr(args, o.name) is not None)
    if others:
        parser.error(f"--task={spec.name} takes no --{', --'.join(dict.fromkeys(others))}")
    options = {}
    for option in spec.generator.options:
        value = getattr(args, option.name)
        value = option.default if value is None else value
        if value is not None and option.minimum is not None and value < option.minimum:
            parser.error(f"--{option.name} must be >= {option.minimum}, got {value}")
        options[option.name] = value
    return options


@cli.user_errors
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lra.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = generated_tasks()
    parser.add_argument("--task", choices=list(tasks), help="required unless --stats")
    parser.add_argument("--out", help="output folder (the data_dir to read); required unless "
                        "--stats")
    parser.add_argument("--num", type=int, default=None,
                        help="number of examples (default: the release's size: " + ", ".join(
                            f"{name} {spec.generator.default_num:,}"
                            for name, spec in tasks.items()) + ")")
    parser.add_argument("--seed", type=int, default=0)
    add_option_flags(parser, tasks)
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
    spec = tasks[args.task]
    num = args.num if args.num is not None else spec.generator.default_num
    if num < 3:
        parser.error(f"--num must be >= 3 (train, validation and test need one each), got {num}")
    options = task_options(parser, args, spec)
    if args.grid and args.task not in ("pathfinder", "pathx"):
        parser.error(f"--grid draws images: only --task=pathfinder or pathx have them, not "
                     f"{args.task} (nothing was written)")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise PathError(f"--out {args.out} is a file; pass a folder (new or existing)")
    target = spec.generator.target(options)
    folder = os.path.join(args.out, target)
    paths.refuse_existing([folder] + ([args.grid] if args.grid else []), args.overwrite)
    start = time.time()
    with paths.temp_folder(args.out, ".lra-generate-", "the generated data",
                           "pass an --out you can write") as tmp:
        spec.generator.run(args.task, tmp, num, args.seed, options)
        paths.publish(os.path.join(tmp, target), folder, tmp)
    written = [folder]
    if args.grid:
        written.append(pathfinder.save_grid(folder, args.grid))
    seconds = time.time() - start
    print(f"lra.generate: wrote {num} {args.task} examples in {seconds:.1f} s "
          f"({num / seconds:.0f}/s): " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
