"""Train and evaluate a model on an LRA task.

    python -m lra.main --config=configs/listops.py:quick --workdir=runs/listops-quick
    python -m lra.main --config=configs/pathx.py:model=s4 --config.data_dir=DATA --workdir=DIR

Any config field can be overridden (`--config.batch_size=8`). Rerunning the same command
resumes from the last checkpoint in --workdir.
"""
if __name__ == "__main__":  # before the heavy imports: on a CPU host, restart once with jemalloc
    from spade_jax import allocator  # preloaded (spade_jax/allocator.py); nothing otherwise
    allocator.reexec_if_needed()

import jax
from absl import app, flags
from ml_collections import config_flags

from lra import report
from lra.tasks import LRATask, resolve_data_dir
from spade_jax.runtime import EXIT_PREEMPTED, start_process
from spade_jax.train.loop import train_and_evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/<task>.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, logs, results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    start_process()
    config = FLAGS.config
    task = LRATask(config.task, resolve_data_dir(config), config.data_options.to_dict())
    results = train_and_evaluate(config, FLAGS.workdir, task)
    if "preempted_at_step" in results:
        print(f"preempted at step {results['preempted_at_step']}: saved; rerun the same command "
              f"to resume (exit status {EXIT_PREEMPTED})", flush=True)
        return EXIT_PREEMPTED
    if jax.process_index() == 0:  # one writer of results.json on a pod slice
        report.finish_run(FLAGS.workdir, config, results, task.majority_accuracy("test"))


if __name__ == "__main__":
    app.run(main)
