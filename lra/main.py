"""Train and evaluate a model on an LRA task.

    python -m lra.main --config=configs/listops.py:quick --workdir=runs/listops-quick
    python -m lra.main --config=configs/pathx.py:model=s4 --config.data_dir=DATA --workdir=DIR

Any config field can be overridden (`--config.batch_size=8`). Rerunning the same command
resumes from the last checkpoint in --workdir.
"""
if __name__ == "__main__":  # before the heavy imports: on a CPU host, restart once with jemalloc
    from spade_jax.runtime import allocator  # preloaded (spade_jax/runtime/allocator.py); nothing otherwise
    allocator.reexec_if_needed()

import sys

import jax
from ml_collections import config_flags

from lra import report, tasks
from lra.data.specs import TASKS
from lra.tasks import resolve_data_dir
from spade_jax.runtime import cli
from spade_jax.runtime.errors import ConfigError
from spade_jax.runtime.process import start_process, stopped_early
from spade_jax.train.loop import train_and_evaluate


def define_flags(flag_values, argv):
    cli.define_config(flag_values, argv, "Experiment config file (configs/<task>.py).")


def main(FLAGS):
    config = FLAGS.config
    if config.get("task") not in TASKS:
        raise ConfigError(f"--config={config_flags.get_config_filename(FLAGS['config'])} is a "
                          f"config of task {config.get('task')!r}, not of an LRA task "
                          f"({', '.join(TASKS)})"
                          + ("; train a language model with python -m lm.main"
                             if config.get("task") == "wikitext103" else ""))
    start_process()
    task = tasks.from_config(config, resolve_data_dir(config))
    results = train_and_evaluate(config, FLAGS.workdir, task)
    stopped = stopped_early(results)
    if stopped is not None:
        return stopped
    if jax.process_index() == 0:  # one writer of results.json on a pod slice
        report.finish_run(FLAGS.workdir, config, results, task.majority_accuracy("test"))


def run(argv) -> int:
    """The command line `python -m lra.main ARGS` (argv[0] is the program), in this process."""
    return cli.run_absl(argv, define_flags, main, __doc__)


if __name__ == "__main__":
    sys.exit(run(sys.argv))
