"""Metrics out of the loop: JSON lines, TensorBoard events, a progress bar, and MFU.

Only process 0 writes. WORKDIR/metrics.jsonl gets one record per log step and evaluation
({"step", "split", metric: value...}), one per (step, split) across restarts: a resumed run
recomputes the steps after its checkpoint and its records replace the earlier ones.
WORKDIR/tensorboard holds the same scalars as TensorBoard events (tensorboardX: no TensorFlow
needed). On object storage (gs://), which cannot append, metrics.jsonl is uploaded whole at
most every `upload_every_s` seconds and at close.
"""
import json
import time

import jax
import jax.numpy as jnp
from absl import logging

from spade_jax import paths


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
        self.upload_every_s, self.uploaded = upload_every_s, 0.0
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
        replaces = (record["step"], split) in self.records
        self.records[(record["step"], split)] = record
        if self.remote:
            if time.monotonic() - self.uploaded >= self.upload_every_s:
                self._rewrite()
        elif replaces:  # a step recomputed after a restart: keep one record for it
            self.jsonl.close()
            self._rewrite()
            self.jsonl = open(self.path, "a")
        else:
            self.jsonl.write(json.dumps(record) + "\n")
            self.jsonl.flush()
        if self.tensorboard is not None:
            for name, value in values.items():
                self.tensorboard.add_scalar(f"{split}/{name}", value, int(step))
            self.tensorboard.flush()

    def close(self) -> None:
        if self.active:
            if self.remote:
                self._rewrite()
            else:
                self.jsonl.close()
            if self.tensorboard is not None:
                self.tensorboard.close()


def progress_bar(total: int, initial: int, enabled: bool):
    """A tqdm bar (step, loss, tokens/s, ETA) on process 0, or None."""
    if not enabled or jax.process_index() != 0:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


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
