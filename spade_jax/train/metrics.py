"""Metrics out of the loop: JSON lines, TensorBoard events, a progress bar, and MFU.

Only process 0 writes. WORKDIR/metrics.jsonl gets one record per log step and evaluation
({"step", "split", metric: value...}), appended across restarts; WORKDIR/tensorboard holds the
same scalars as TensorBoard events (tensorboardX: no TensorFlow needed).
"""
import json
import os
import time

import jax
import jax.numpy as jnp


class MetricsWriter:
    def __init__(self, workdir: str):
        self.active = jax.process_index() == 0
        if self.active:
            from tensorboardX import SummaryWriter
            self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
            self.tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, split: str, values: dict) -> None:
        if not self.active:
            return
        values = {k: float(v) for k, v in values.items()}
        self.jsonl.write(json.dumps({"step": int(step), "split": split, **values}) + "\n")
        self.jsonl.flush()
        for name, value in values.items():
            self.tensorboard.add_scalar(f"{split}/{name}", value, int(step))
        self.tensorboard.flush()

    def close(self) -> None:
        if self.active:
            self.jsonl.close()
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
