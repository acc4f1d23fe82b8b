"""Point functions for the harness tests, run in fresh processes by
benchmarks.isolation.run_point (as 'tests.benchmarks.points:<name>')."""
import time

import numpy as np


def allocate(megabytes: int, chunk_mb: int = 0, pause_s: float = 0.0) -> dict:
    """Holds `megabytes` of touched memory (in chunks of chunk_mb, pausing between them)."""
    chunk = chunk_mb or megabytes
    held = []
    for _ in range(-(-megabytes // chunk)):
        held.append(np.ones(chunk * 2**20 // 8))
        time.sleep(pause_s)
    return {"held_mb": sum(a.nbytes for a in held) / 2**20}


def sleep(seconds: float) -> dict:
    time.sleep(seconds)
    return {}


def by_length(length: int, repeats: int, warmup: int, deadline: float, fail_above: int,
              error: str) -> dict:
    """ok up to fail_above; beyond it raises `error` ('memory' -> MemoryError, else ValueError).
    (A sweep's point: it gets length, repeats, warmup and deadline.)"""
    if length > fail_above:
        raise MemoryError("synthetic") if error == "memory" else ValueError("synthetic bug")
    return {"median_s": 1e-3 * length, "min_s": 1e-3 * length, "max_s": 1e-3 * length,
            "repeats": repeats, "tokens": length}
