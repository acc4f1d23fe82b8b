"""Timing and memory inside a point (the child process that benchmarks.point runs).

Compile ahead of time (timed apart: `compile_timed`), warm up, then the median of `repeats`
calls, each ended by `block_until_ready`, with min / max (`time_calls`). A point is handed a
`deadline` (a time.time() value, a share of its --timeout_s, see `deadline_after`): when the
timed calls would pass it, fewer are taken and the row says so. `time_compiled` also records
the peak memory of setup and compilation and, apart, that of the calls (`reset_peak_memory`);
`time_jitted` is jit + `compile_timed` + `time_compiled`.

Memory (`peak_memory`): the process's peak RSS on CPU (VmHWM), the device's
`memory_stats()['peak_bytes_in_use']` on accelerators.
"""
import resource
import statistics
import sys
import time

from spade_jax.runtime import host

# The share of a point's --timeout_s by which its timed calls should be done: the rest is left
# for the process's start, compilation and the report.
DEADLINE_SHARE = 0.8


def deadline_after(timeout_s: float) -> float:
    """(In the parent, as a point starts.) The deadline (time.time()) of its timed calls."""
    return time.time() + DEADLINE_SHARE * timeout_s


def peak_memory():
    """(bytes, source): the process's peak RSS on CPU, the device's peak_bytes_in_use on
    accelerators (None when the device keeps no statistics)."""
    import jax
    if jax.default_backend() == "cpu":
        # Linux: VmHWM, the high-water mark of this process's own address space (reset by
        # `reset_peak_memory`). Not ru_maxrss: execve folds the parent's peak into it, so a point
        # started from a large process (a pytest worker) would read that parent's peak.
        hwm = host.meminfo("/proc/self/status").get("VmHWM")
        if hwm is not None:
            return hwm, "process peak RSS"
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, "process peak RSS"
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use"), "device peak_bytes_in_use"


def reset_peak_memory() -> bool:
    """Restarts the peak-memory count from the current usage, so that `peak_memory` then covers
    only what follows; returns whether it could.

    CPU (Linux): returns the freed C heap to the system (malloc_trim) and resets the process's
    peak RSS (VmHWM) to its current RSS through /proc/self/clear_refs.
    Accelerators: nothing to reset; compilation does not allocate device memory, so the device
    peak already stands for the run (plus the short-lived setup).
    """
    import jax
    if jax.default_backend() != "cpu":
        return True
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except (OSError, AttributeError):
        return False


def compile_timed(jitted, *args):
    """(compiled, seconds): ahead-of-time compilation of a jitted function for `args`."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start


def time_calls(call, repeats: int, warmup: int = 1, deadline=None) -> dict:
    """Times `call()` (which must block until its results are ready): `warmup` untimed calls,
    then the median of up to `repeats` timed calls, fewer if `deadline` (time.time()) would
    pass."""
    for _ in range(warmup):
        call()
    times = []
    while len(times) < repeats:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
        if deadline is not None and time.time() + times[-1] > deadline:
            break
    out = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
           "repeats": len(times), "times_s": times}
    if len(times) < repeats:
        out["note"] = f"{len(times)} of {repeats} repeats (time budget)"
    return out


def time_compiled(call, repeats: int, warmup: int = 1, deadline=None) -> dict:
    """`time_calls(call)` once compiled: also records the peak memory of the setup and
    compilation ('compile_peak_bytes') and, apart, the peak of the calls ('run_peak_bytes', None
    where the peak cannot be restarted)."""
    compile_peak = peak_memory()[0]
    fresh = reset_peak_memory()
    stats = time_calls(call, repeats, warmup, deadline)
    return dict(stats, compile_peak_bytes=compile_peak,
                run_peak_bytes=peak_memory()[0] if fresh else None)


def time_jitted(fn, *args, repeats: int, warmup: int = 1, deadline=None) -> dict:
    """Compiles jax.jit(fn) for args (timed apart: 'compile_s'), then `time_compiled`."""
    import jax
    compiled, compile_s = compile_timed(jax.jit(fn), *args)
    stats = time_compiled(lambda: jax.block_until_ready(compiled(*args)), repeats, warmup,
                          deadline)
    return dict(stats, compile_s=compile_s)


def differentiated(fn, pass_: str, argnums=0):
    """fn itself for pass 'fwd'; for 'fwd+bwd', the gradient of 0.5 * sum(fn(...)**2) with
    respect to `argnums` (the forward pass and a full backward pass with a non-trivial
    cotangent)."""
    import jax
    import jax.numpy as jnp
    if pass_ == "fwd":
        return fn
    if pass_ != "fwd+bwd":
        raise ValueError(f"pass must be 'fwd' or 'fwd+bwd', got {pass_!r}")
    return jax.grad(lambda *a: 0.5 * jnp.sum(jnp.square(fn(*a).astype(jnp.float32))), argnums)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether a point's exception means it ran out of memory (MemoryError, XLA's
    RESOURCE_EXHAUSTED, an allocator's message) rather than a bug."""
    text = f"{type(error).__name__}: {error}"
    return isinstance(error, MemoryError) or any(
        s in text for s in ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory",
                            "Failed to allocate"))


def tree_bytes(tree) -> int:
    """Bytes held by the arrays of a pytree."""
    import jax
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree)))
