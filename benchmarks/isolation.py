"""One fresh process per point (the parent's side; the child is benchmarks.point).

A point is a function `module:function(**kwargs) -> dict` run by `python -m benchmarks.point`
in a new Python process (`run_point`), so that
  * its peak memory is its own (see benchmarks.timing.peak_memory), reported above the baseline
    of a process that has imported JAX, Flax and spade_jax and run a tiny jitted function;
  * a point that runs out of memory or time is stopped (killed past its time or RSS budget, or
    failing with RESOURCE_EXHAUSTED) and recorded, without ending the run;
  * the parent never starts a JAX backend (on a GPU it would hold device memory of its own).
The points run as `python -m lra.main` does: with the allocator it preloads
(spade_jax/runtime/allocator.py).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import ROOT
from benchmarks.rows import ERROR, OUT_OF_MEMORY, OUT_OF_TIME
from spade_jax.runtime import allocator, host

# The line of the child's stdout that carries its result: POINT_MARKER + json.
POINT_MARKER = "BENCHMARK-POINT "


def run_point(fn: str, kwargs: dict, *, timeout_s: float, memory_gb=None, runtime=None,
              poll_s: float = 0.05) -> dict:
    """Runs `fn` ('module:function') with `kwargs` in a fresh process (benchmarks.point).

    Returns the function's dict plus 'status' (ok, out of memory, out of time, error), 'detail',
    'base_bytes' / 'peak_bytes' / 'memory_source' (see benchmarks.timing.peak_memory) and
    'wall_s'. The parent kills the process past `timeout_s` or past `memory_gb` of RSS (checked
    every `poll_s`). runtime: a dict (the run's machine header) into which the point's report of
    its JAX runtime (benchmarks.machine.probe: backend, device kind, ...) is merged.
    """
    env = allocator.preload_env()  # the points run as lra.main does (spade_jax/runtime/allocator.py)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    limit = memory_gb * 2**30 if memory_gb else None
    start = time.perf_counter()
    killed, detail = None, ""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.point",
                                 json.dumps({"fn": fn, "kwargs": kwargs})],
                                stdout=out, stderr=err, env=env)
        while proc.poll() is None:
            elapsed = time.perf_counter() - start
            rss = host.meminfo(f"/proc/{proc.pid}/status").get("VmRSS", 0) if limit else 0
            if elapsed > timeout_s:
                killed = OUT_OF_TIME
                detail = f"stopped after {elapsed:.0f} s (budget {timeout_s:.0f} s)"
            elif limit and rss > limit:
                killed, detail = OUT_OF_MEMORY, (f"RSS {rss / 2**30:.1f} GiB above the budget "
                                                 f"{memory_gb:.1f} GiB")
            if killed:
                proc.kill()
                proc.wait()
                break
            time.sleep(poll_s)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if killed:
        return {"status": killed, "detail": detail, "wall_s": wall}
    lines = [line for line in stdout.splitlines() if line.startswith(POINT_MARKER)]
    if not lines:
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        if proc.returncode == -9:
            return {"status": OUT_OF_MEMORY, "wall_s": wall,
                    "detail": "killed by SIGKILL (the kernel's out-of-memory killer?)"}
        return {"status": ERROR, "wall_s": wall,
                "detail": f"exit code {proc.returncode}: {tail[-500:]}"}
    result = json.loads(lines[-1][len(POINT_MARKER):])
    result["wall_s"] = wall
    reported = result.pop("runtime", None) or {}
    if runtime is not None:
        runtime.update(reported)
    return result
