"""One measurement point in a fresh process (started by benchmarks.isolation.run_point).

    python -m benchmarks.point '{"fn": "module:function", "kwargs": {...}}'

Imports JAX, Flax, optax and spade_jax's models and runs a tiny jitted function (so that module
code and the start-up of the compiler and the runtime are not counted as the point's memory),
records the baseline memory (`timing.peak_memory`), runs fn(**kwargs) -> dict, and prints one
line `BENCHMARK-POINT <json>`: the function's dict plus status ('ok', 'out of memory' for
RESOURCE_EXHAUSTED / MemoryError, 'error' otherwise, with the message in 'detail'),
base_bytes, peak_bytes, memory_source and runtime (`machine.probe`).
"""
import importlib
import json
import sys
import traceback

from benchmarks import machine, timing
from benchmarks.isolation import POINT_MARKER
from benchmarks.rows import ERROR, OK, OUT_OF_MEMORY

# Imported before the baseline is read (see the docstring).
PRELOAD = ("jax", "jax.numpy", "flax.linen", "optax", "spade_jax.model.models")


def main(argv):
    spec = json.loads(argv[1])
    for module in PRELOAD:
        importlib.import_module(module)
    import jax
    import jax.numpy as jnp
    # The backend, the compiler and the runtime's threads start before the baseline is read.
    jax.block_until_ready(jax.jit(lambda x: jnp.tanh(x @ x).sum())(jnp.ones((64, 64))))
    module, _, name = spec["fn"].partition(":")
    fn = getattr(importlib.import_module(module), name)
    # Warm-up's transient peak must not hide what the point allocates: restart the peak count
    # from the current usage, so the baseline is what the process holds now.
    timing.reset_peak_memory()
    base, source = timing.peak_memory()
    try:
        result = dict(fn(**spec["kwargs"]) or {})
        result.setdefault("status", OK)
    except Exception as error:  # recorded in the row; the sweep goes on
        traceback.print_exc()
        status = OUT_OF_MEMORY if timing.is_out_of_memory(error) else ERROR
        message = f"{type(error).__name__}: {error}".strip().splitlines()
        result = {"status": status, "detail": " ".join(message[:2])[:400]}
    # The peak may have been restarted after compilation (timing.reset_peak_memory): the
    # process's peak is the larger of the two parts.
    peak = max((m for m in (timing.peak_memory()[0], result.get("compile_peak_bytes"))
                if m is not None), default=None)
    result.update(base_bytes=base, peak_bytes=peak, memory_source=source,
                  runtime=machine.probe())
    print(POINT_MARKER + json.dumps(result, default=float), flush=True)


if __name__ == "__main__":
    main(sys.argv)
