"""What the training loop prints: one line per logging step when stdout is not a terminal (the
log file of a pod or a SLURM job), validation lines in every case."""
import io

from spade_jax.train.metrics import Console

RECORD = {"loss": 1.8123, "accuracy": 0.352, "learning_rate": 1e-3, "tokens_per_s": 39134.0,
          "mfu": 0.123, "steps_per_s": 6.0}


def test_a_log_file_gets_one_line_per_logging_step_and_the_validation_lines():
    out = io.StringIO()  # not a terminal
    console = Console(total=2000, initial=0, enabled=True, stream=out)
    for step in range(1, 101):
        console.step(1.0)  # no output per step
        if step % 50 == 0:
            console.log(step, RECORD)
    console.evaluation(100, "validation", {"accuracy": 0.3, "loss": 1.9, "scored": 500})
    console.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "step 50/2000 | loss 1.8123 | accuracy 35.20% | lr 1.0e-03 | 39,134 tok/s | MFU 12.3% | "
        "ETA 5m25s",
        "step 100/2000 | loss 1.8123 | accuracy 35.20% | lr 1.0e-03 | 39,134 tok/s | MFU 12.3% | "
        "ETA 5m16s",
        "validation at step 100: accuracy 30.00%, loss 1.9000 (500 scored)"]


def test_without_progress_only_evaluations_are_shown():
    out = io.StringIO()
    console = Console(total=10, initial=0, enabled=False, stream=out)
    console.step(1.0)
    console.log(1, RECORD)
    console.evaluation(1, "validation", {"loss": 2.0, "perplexity": 7.39, "scored": 64})
    assert out.getvalue() == "validation at step 1: loss 2.0000, perplexity 7.3900 (64 scored)\n"
