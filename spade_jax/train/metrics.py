"""Metrics out of the loop: JSON lines, TensorBoard events, a progress bar, and MFU.

Only process 0 writes. WORKDIR/metrics.jsonl gets one record per log step and evaluation
({"step", "split", metric: value...}), one per (step, split) across restarts: a resumed run
recomputes the steps after its checkpoint and its records replace the earlier ones (appended as
they come, the file compacted when the writer closes or the next run opens it).
WORKDIR/tensorboard holds the same scalars as TensorBoard events (tensorboardX: no TensorFlow
needed). On object storage (gs://), which cannot append, metrics.jsonl is uploaded whole at
most every `upload_every_s` seconds and at close.
"""
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from spade_jax.runtime import paths


def read_records(workdir) -> list:
    """The records of WORKDIR/metrics.jsonl, one per (step, split) (the last written wins), in
    the order they were first written; [] when there is none. A line that is not a record (the
    torn last line of a run killed while writing, a damaged file) is dropped."""
    path = paths.workdir_path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = {}
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records[(record.get("step"), record.get("split"))] = record
    return list(records.values())


# tensorboardX writes to object storage through these packages (not installed by default)
_TENSORBOARD_CLIENTS = {"gs://": "google.cloud.storage", "s3://": "boto3"}


def _tensorboard_writer(root):
    """A tensorboardX SummaryWriter into ROOT/tensorboard, or None (with a warning) on object
    storage whose client package is not installed."""
    import importlib.util

    from tensorboardX import SummaryWriter
    for scheme, package in _TENSORBOARD_CLIENTS.items():
        if str(root).startswith(scheme):
            try:
                found = importlib.util.find_spec(package) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                logging.warning("no TensorBoard events in %s: tensorboardX needs the %s package "
                                "for %s URLs (pip install it)", root, package, scheme)
                return None
    return SummaryWriter(str(root / "tensorboard"))


class MetricsWriter:
    def __init__(self, workdir, upload_every_s: float = 60.0):
        self.active = jax.process_index() == 0
        if not self.active:
            return
        root = paths.workdir_path(workdir)
        self.path, self.remote = root / "metrics.jsonl", paths.is_url(root)
        self.records = {(r.get("step"), r.get("split")): r for r in read_records(workdir)}
        self.upload_every_s, self.uploaded, self.replaced = upload_every_s, 0.0, False
        self._rewrite()  # compacts the records of earlier invocations
        self.jsonl = None if self.remote else open(self.path, "a")
        self.tensorboard = _tensorboard_writer(root)

    def _rewrite(self):
        paths.write_bytes(self.path, "".join(json.dumps(r) + "\n"
                                             for r in self.records.values()).encode())
        self.uploaded = time.monotonic()

    def write(self, step: int, split: str, values: dict) -> None:
        if not self.active:
            return
        values = {k: float(v) for k, v in values.items()}
        record = {"step": int(step), "split": split, **values}
        self.replaced |= (record["step"], split) in self.records
        self.records[(record["step"], split)] = record
        if self.remote:
            if time.monotonic() - self.uploaded >= self.upload_every_s:
                self._rewrite()
        else:  # appended; a step recomputed after a restart is compacted at close
            self.jsonl.write(json.dumps(record) + "\n")
            self.jsonl.flush()
        if self.tensorboard is not None:
            for name, value in values.items():
                self.tensorboard.add_scalar(f"{split}/{name}", value, int(step))
            self.tensorboard.flush()

    def close(self) -> None:
        if self.active:
            if not self.remote:
                self.jsonl.close()
            if self.remote or self.replaced:
                self._rewrite()
            if self.tensorboard is not None:
                self.tensorboard.close()


class Console:
    """What process 0 shows while training. On a terminal: a tqdm bar (step, loss, tokens/s,
    ETA). Elsewhere (a pod's or SLURM's log file): one line per logging step, e.g.
    `step 500/2000 | loss 1.8123 | accuracy 35.20% | lr 1.0e-03 | 39,134 tok/s | MFU 12.3% |
    ETA 4m10s`. Evaluation lines (`validation at step 500: ...`) in both cases.
    enabled=False (config.show_steps) shows neither bar nor step lines; the evaluation lines
    stay."""

    def __init__(self, total: int, initial: int, enabled: bool, stream=None):
        self.total, self.enabled = total, enabled and jax.process_index() == 0
        self.stream = stream or sys.stdout
        self.bar = None
        if self.enabled and self.stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def step(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")

    def log(self, step: int, record: dict) -> None:
        """A logging step's record (the train metrics written to metrics.jsonl)."""
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.4f}",
                                 tok_s=f"{record['tokens_per_s']:,.0f}")
        elif self.enabled:
            parts = [f"step {step}/{self.total}", f"loss {record['loss']:.4f}"]
            if "accuracy" in record:
                parts.append(f"accuracy {100 * record['accuracy']:.2f}%")
            if "perplexity" in record:
                parts.append(f"perplexity {record['perplexity']:.2f}")
            parts += [f"lr {record['learning_rate']:.1e}",
                      f"{record['tokens_per_s']:,.0f} tok/s", f"MFU {100 * record['mfu']:.1f}%"]
            if record["steps_per_s"] > 0:
                parts.append(f"ETA {_duration((self.total - step) / record['steps_per_s'])}")
            self._print(" | ".join(parts))

    def evaluation(self, step: int, split: str, values: dict) -> None:
        if jax.process_index() != 0:
            return
        shown = [f"{name} {100 * values[name]:.2f}%" if name == "accuracy" else
                 f"{name} {values[name]:.4f}" for name in ("accuracy", "loss", "perplexity")
                 if name in values]
        self._print(f"{split} at step {step}: " + ", ".join(shown) +
                    f" ({values.get('scored', 0):,.0f} scored)")

    def _print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def with_perplexity(values: dict) -> dict:
    """Adds exp(loss) as 'perplexity' when the task reports a per-token loss ('token_loss')."""
    if "token_loss" in values:
        values["perplexity"] = float(np.exp(min(float(values["token_loss"]), 50.0)))
    return values


class TrainLog:
    """The training records of the logging steps (every `log_every` steps and the last): the
    step's metrics with the learning rate, and the steps/s, tokens/s and MFU of the interval
    since the previous record (the first step of an invocation, which compiles, left out);
    written to metrics.jsonl and shown. `step_flops` / `peak_flops`: one step's FLOPs and the
    FLOP/s of all devices together."""

    def __init__(self, writer: MetricsWriter, console: Console, *, learning_rate, log_every: int,
                 num_steps: int, start_step: int, tokens_per_batch: int, step_flops: float,
                 peak_flops: float):
        self.writer, self.console, self.learning_rate = writer, console, learning_rate
        self.log_every, self.num_steps, self.start_step = log_every, num_steps, start_step
        self.tokens_per_batch, self.step_flops, self.peak_flops = (tokens_per_batch, step_flops,
                                                                   peak_flops)
        self.last_time, self.last_step = time.perf_counter(), start_step

    def step(self, step: int, metrics: dict) -> None:
        """After every step, with its host metrics (scalars; 'finite' is left out)."""
        if step == self.start_step + 1:
            self.last_time, self.last_step = time.perf_counter(), step
        self.console.step(float(metrics["loss"]))
        if not (self.log_every and step % self.log_every == 0 or step == self.num_steps):
            return
        now = time.perf_counter()
        rate = ((step - self.last_step) / max(now - self.last_time, 1e-9)
                if step > self.last_step else 0.0)
        self.last_time, self.last_step = now, step
        record = with_perplexity({k: v for k, v in metrics.items() if k != "finite"})
        record.update(learning_rate=float(self.learning_rate(step - 1)), steps_per_s=rate,
                      tokens_per_s=rate * self.tokens_per_batch,
                      mfu=self.step_flops * rate / self.peak_flops)
        self.writer.write(step, "train", record)
        self.console.log(step, record)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def measure_peak_flops(size: int = 2048, repeats: int = 3) -> float:
    """Measured float32 matmul FLOP/s of one device (best of `repeats`), the MFU denominator
    when the config gives no peak."""
    a = jax.device_put(jnp.ones((size, size), jnp.float32), jax.devices()[0])
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best
