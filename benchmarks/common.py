"""The benchmark harness shared by every `python -m benchmarks.<name>`.

Measurement points run in fresh processes. Each point (one configuration at one length) is a
function `module:function(**kwargs) -> dict` run by `python -m benchmarks.point` in a new Python
process, so that
  * its peak memory is its own: the peak RSS of that process on CPU (`VmHWM`), the device's
    `memory_stats()['peak_bytes_in_use']` on accelerators. Reported above the baseline of a
    process that has imported JAX, Flax and spade_jax and run a tiny jitted function ('memory':
    setup, compilation and the calls; 'run': the timed calls alone, the CPU peak being restarted
    after compilation, see `reset_peak_memory`), and as the absolute process peak;
  * a point that runs out of memory or time is stopped (killed by the parent past its time or
    RSS budget, or failing with RESOURCE_EXHAUSTED) and recorded, without ending the sweep;
  * the parent never starts a JAX backend (on a GPU it would hold device memory of its own).

Timing inside a point (`time_jitted`, `time_compiled`, `time_calls`): compile ahead of time
(reported apart), warm up, then the median of `repeats` calls, each ended by
`block_until_ready`, with min / max. When the point's time budget cannot fit all repeats, fewer
are taken and the row says so.

A sweep (`sweep`) runs series (a family, a kernel variant, ...) over increasing lengths and stops
a series at its first failure: the longer lengths are recorded as skipped, with the reason.

Outputs (`write_report`): into a fresh folder (default benchmarks/results/<name>/<timestamp>; an
existing non-empty --out is refused), <name>.json (machine header, flags, every row, fits,
targets), <name>.md (the tables, fits and target lines) and <name>.png (log-log plots).
"""
import argparse
import ast
import datetime
import importlib.metadata
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from spade_jax import allocator, host
from spade_jax.errors import PathError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
MIB = 2.0**20
POINT_MARKER = "BENCHMARK-POINT "
OK = "ok"
OUT_OF_MEMORY = "out of memory"
OUT_OF_TIME = "out of time"
SKIPPED = "skipped"
ERROR = "error"
PASSES = ("fwd", "fwd+bwd")

# What the JAX runtime of the points reports (`probe`): filled by run_point in the parent and
# merged into the machine header when the report is written (no process of its own).
RUNTIME = {}

# Set by benchmarks.point in the child: the wall-clock time (time.time()) by which the point
# should have finished its timed calls (a fraction of --timeout_s).
deadline = None


# ---------------------------------------------------------------------------------------------
# Flags


def parse_lengths(text: str) -> list:
    """'1K,2K,4096' -> [1024, 2048, 4096] (K = 1024), sorted, without duplicates."""
    lengths = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d+)\s*([kK]?)", part)
        if not match:
            raise argparse.ArgumentTypeError(f"length {part!r}: expected an integer, K = 1024 "
                                             f"(e.g. 1K,2K,4096)")
        value = int(match.group(1)) * (1024 if match.group(2) else 1)
        if value < 1:
            raise argparse.ArgumentTypeError(f"length {part!r} must be positive")
        lengths.add(value)
    if not lengths:
        raise argparse.ArgumentTypeError("no lengths given")
    return sorted(lengths)


def names(choices):
    """An argparse type: 'a,b' -> ['a', 'b'], each one of `choices`, in the order of choices."""
    def parse_names(text: str) -> list:
        given = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in given if t not in choices]
        if bad or not given:
            raise argparse.ArgumentTypeError(f"{bad or text!r}: choose from {', '.join(choices)}")
        return [c for c in choices if c in given]
    return parse_names


def add_names(p: argparse.ArgumentParser, flag: str, choices, default=None) -> None:
    """A comma-separated selection flag (`names`); default: all the choices."""
    default = list(choices) if default is None else default
    p.add_argument(flag, type=names(choices), default=default,
                   help=f"comma-separated, from {','.join(choices)} (default {','.join(default)})")


def config_override(text: str) -> tuple:
    """An argparse type: 'model.s4.kernel=diag' -> ('model.s4.kernel', 'diag'); the value is a
    Python literal where it parses as one (0.0, True, (0, 1)), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. model.dropout=0.0")
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass
    return key.strip(), value


def add_config_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], type=config_override,
                   metavar="KEY=VALUE", help="override a field of the Text config "
                   "(configs/text.py), e.g. model.dropout=0.0 or model.s4.kernel=diag; repeatable")


def overrides_label(args) -> str:
    return "".join(f", {k}={v}" for k, v in args.set)


def length_label(length: int) -> str:
    """4096 -> '4K', 1000 -> '1000'."""
    return f"{length // 1024}K" if length % 1024 == 0 else str(length)


def parser(description: str, *, lengths: str = "1K,2K,4K,8K,16K,32K,64K",
           quick_lengths: str = "256,512", repeats: int = 5, batch: int = 0,
           passes: bool = False) -> argparse.ArgumentParser:
    """The flags every benchmark takes (with `batch`: --batch, its default; with `passes`:
    --passes); add its own, then call `parse`."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="output folder; must not exist or be empty (default: "
                   "benchmarks/results/<name>/<timestamp>)")
    if lengths:
        p.add_argument("--lengths", type=parse_lengths, default=None,
                       help=f"sequence lengths, K = 1024 (default {lengths}; --quick: "
                            f"{quick_lengths})")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed calls per point after warm-up; the median is reported "
                        f"(default {repeats}; --quick: 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls after compilation")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and lengths: a smoke run of the script (seconds); the "
                        "numbers mean nothing")
    p.add_argument("--timeout_s", type=float, default=None,
                   help="time budget of one point, compilation included (default 600; "
                        "--quick: 120); a point past it is stopped and its series ends")
    p.add_argument("--memory_gb", type=float, default=None,
                   help="RSS budget of one point's process (default: 80%% of the memory "
                        "available at start); a point past it is stopped and its series ends")
    if batch:
        p.add_argument("--batch", type=int, default=batch, help="sequences per call")
    if passes:
        add_names(p, "--passes", PASSES)
    p.set_defaults(_lengths=lengths, _quick_lengths=quick_lengths, _repeats=repeats)
    return p


def parse(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parses the flags and fills the defaults that depend on --quick."""
    args = p.parse_args(argv)
    if args._lengths and args.lengths is None:
        args.lengths = parse_lengths(args._quick_lengths if args.quick else args._lengths)
    if args.repeats is None:
        args.repeats = 2 if args.quick else args._repeats
    if args.timeout_s is None:
        args.timeout_s = 120.0 if args.quick else 600.0
    if args.memory_gb is None:
        available = host.meminfo().get("MemAvailable")
        args.memory_gb = round(0.8 * available / 2**30, 1) if available else None
    if args.repeats < 1 or args.warmup < 0 or args.timeout_s <= 0:
        p.error("--repeats must be >= 1, --warmup >= 0 and --timeout_s > 0")
    return args


def flags_record(args) -> dict:
    return {k: v for k, v in vars(args).items() if not k.startswith("_")}


# ---------------------------------------------------------------------------------------------
# Inside a point (the child process)


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


def compile_timed(jitted, *args):
    """(compiled, seconds): ahead-of-time compilation of a jitted function for `args`."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start


def time_calls(call, repeats: int, warmup: int = 1) -> dict:
    """Times `call()` (which must block until its results are ready): `warmup` untimed calls,
    then the median of up to `repeats` timed calls, fewer if the point's deadline would pass."""
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


def time_compiled(call, repeats: int, warmup: int = 1) -> dict:
    """`time_calls(call)` once compiled: also records the peak memory of the setup and
    compilation ('compile_peak_bytes') and, apart, the peak of the calls ('run_peak_bytes', None
    where the peak cannot be restarted)."""
    compile_peak = peak_memory()[0]
    fresh = reset_peak_memory()
    stats = time_calls(call, repeats, warmup)
    return dict(stats, compile_peak_bytes=compile_peak,
                run_peak_bytes=peak_memory()[0] if fresh else None)


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



def time_jitted(fn, *args, repeats: int, warmup: int = 1) -> dict:
    """Compiles jax.jit(fn) for args (timed apart: 'compile_s'), then `time_compiled`."""
    import jax
    compiled, compile_s = compile_timed(jax.jit(fn), *args)
    stats = time_compiled(lambda: jax.block_until_ready(compiled(*args)), repeats, warmup)
    return dict(stats, compile_s=compile_s)


def is_out_of_memory(error: BaseException) -> bool:
    text = f"{type(error).__name__}: {error}"
    return isinstance(error, MemoryError) or any(
        s in text for s in ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory",
                            "Failed to allocate"))


def tree_bytes(tree) -> int:
    import jax
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree)))


# ---------------------------------------------------------------------------------------------
# Running points (the parent process)


def run_point(fn: str, kwargs: dict, *, timeout_s: float, memory_gb=None,
              poll_s: float = 0.05) -> dict:
    """Runs `fn` ('module:function') with `kwargs` in a fresh process (benchmarks.point).

    Returns the function's dict plus 'status' (ok, out of memory, out of time, error), 'detail',
    'base_bytes' / 'peak_bytes' / 'memory_source' (see `peak_memory`) and 'wall_s'. The parent
    kills the process past `timeout_s` or past `memory_gb` of RSS (checked every `poll_s`).
    """
    spec = {"fn": fn, "kwargs": kwargs, "deadline": time.time() + 0.8 * timeout_s}
    env = allocator.preload_env()  # the points run as lra.main does (spade_jax/allocator.py)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    limit = memory_gb * 2**30 if memory_gb else None
    start = time.perf_counter()
    killed, detail = None, ""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.point", json.dumps(spec)],
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
    RUNTIME.update(result.pop("runtime", None) or {})
    return result


def describe(row: dict) -> str:
    """One progress line for a finished point."""
    if row["status"] != OK:
        return f"{row['status']} ({row.get('detail', '')})"
    parts = []
    if "median_s" in row:
        parts.append(f"{row['median_s'] * 1e3:.2f} ms (median of {row.get('repeats')})")
    if "compile_s" in row:
        parts.append(f"compile {row['compile_s']:.1f} s")
    memory = memory_above_base(row)
    if memory is not None:
        parts.append(f"memory +{memory / MIB:.0f} MiB")
    return ", ".join(parts) or OK


def sweep(series: list, lengths: list, args, fn: str) -> list:
    """Runs every series over `lengths` (increasing), one fresh process per point.

    series: dicts with 'label' (names the series), 'kwargs' (the point function's arguments,
    without 'length') and any other keys (family, scope, ...), which are copied into its rows.
    A series stops at its first point that is not ok: the longer lengths get status 'skipped'
    and the reason ('stopped at L=8K: out of memory').
    """
    rows = []
    for s in series:
        meta = {k: v for k, v in s.items() if k != "kwargs"}
        stopped = None
        for length in lengths:
            if stopped:
                rows.append(dict(meta, length=length, status=SKIPPED, detail=stopped))
                continue
            row = dict(meta, length=length, **run_point(
                fn, dict(s["kwargs"], length=length, repeats=args.repeats, warmup=args.warmup),
                timeout_s=args.timeout_s, memory_gb=args.memory_gb))
            print(f"  {s['label']} L={length_label(length)}: {describe(row)}", file=sys.stderr,
                  flush=True)
            rows.append(row)
            if row["status"] != OK:
                stopped = f"stopped at L={length_label(length)}: {row['status']}"
    return rows


# ---------------------------------------------------------------------------------------------
# Derived quantities


def memory_above_base(row: dict, key: str = "peak_bytes"):
    """Peak memory of the point above the baseline of a fresh JAX process (bytes), or None.
    key 'peak_bytes': the whole process (setup, compilation, run); 'run_peak_bytes': the timed
    calls only."""
    if row.get(key) is None or row.get("base_bytes") is None:
        return None
    return max(row[key] - row["base_bytes"], 0)


def memory_mib(row: dict, key: str = "peak_bytes"):
    """`memory_above_base` in MiB, or None."""
    m = memory_above_base(row, key)
    return None if m is None else m / MIB


def per_token_us(row: dict):
    """Median time per token in microseconds (rows carry 'tokens' per call), or None."""
    return row.get("median_s") and row["median_s"] / row["tokens"] * 1e6


def fit_exponent(xs, ys) -> float:
    """Least-squares slope of log(y) against log(x): the growth exponent of y ~ c * x^p."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(xs) < 2 or len(set(xs.tolist())) < 2:
        raise ValueError("a growth exponent needs at least two distinct lengths")
    if np.any(xs <= 0) or np.any(ys <= 0):
        raise ValueError("a growth exponent needs positive values")
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def fit_series(rows: list, value, *, key=lambda r: r["label"]) -> dict:
    """{series: {'exponent', 'points', 'from', 'to'}} for the ok rows of each series with at
    least two lengths; value(row) -> the quantity (e.g. time per sequence)."""
    groups = {}
    for r in rows:
        if r["status"] == OK and value(r) is not None:
            groups.setdefault(key(r), []).append((r["length"], value(r)))
    fits = {}
    for name, points in groups.items():
        if len({x for x, _ in points}) >= 2:
            xs, ys = zip(*sorted(points))
            fits[name] = {"exponent": fit_exponent(xs, ys), "points": len(xs), "from": xs[0],
                          "to": xs[-1]}
    return fits


def growth(rows: list, memory_key: str = "peak_bytes") -> tuple:
    """Growth exponents of each series' median time and of its memory above baseline
    (memory_key as in `memory_above_base`): (fits {'time': ..., 'memory': ...}, report
    sections)."""
    fits = {"time": fit_series(rows, lambda r: r.get("median_s")),
            "memory": fit_series(rows, lambda r: memory_above_base(r, memory_key))}
    part = "process" if memory_key == "peak_bytes" else "timed calls"
    return fits, [("Growth exponents: time per call", fits_table(fits["time"], "time")),
                  (f"Growth exponents: peak memory of the {part} above baseline",
                   fits_table(fits["memory"], "memory"))]


def time_ratio(rows: list, row: dict, **base):
    """row's median time over that of the ok row matching `base` at the same length (and the
    same pass, where rows have one); None when either is missing."""
    if row["status"] != OK:
        return None
    match = dict(base, length=row["length"], status=OK)
    if "pass" in row:
        match["pass"] = row["pass"]
    other = find(rows, **match)
    return other and row["median_s"] / other["median_s"]


def find(rows: list, **match):
    """The first row whose fields equal `match`, or None."""
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def target(description: str, measured, limit, *, higher_is_better: bool, unit: str = "",
           missing: str = "") -> dict:
    """A target line: 'target: <description> (limit) measured: <value> met|missed', or 'not
    measured (<missing>)' when measured is None."""
    sign = ">=" if higher_is_better else "<="
    if measured is None:
        met, shown = None, f"not measured ({missing or 'no data'})"
    else:
        met = measured >= limit if higher_is_better else measured <= limit
        shown = f"{measured:.3g}{unit} {'met' if met else 'missed'}"
    return {"description": description, "limit": f"{sign} {limit:g}{unit}", "measured": measured,
            "met": met, "line": f"target: {description} {sign} {limit:g}{unit}; measured: {shown}"}


def why_missing(named_rows: dict) -> str:
    """Why the named rows ({name: row or None}) give no measurement, for target lines:
    '<name>: not run', '<name> at L=16K: out of memory (<detail>)'; '' when all are ok."""
    parts = []
    for name, row in named_rows.items():
        if row is None:
            parts.append(f"{name}: not run")
        elif row["status"] != OK:
            detail = f" ({row['detail']})" if row.get("detail") else ""
            parts.append(f"{name} at L={length_label(row['length'])}: {row['status']}{detail}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# Tables, plots, output folder


def div(a, b):
    """a / b, or None when either is missing (or b is 0)."""
    return None if a is None or not b else a / b


def fmt(value, spec: str = ".3g") -> str:
    """format(value, spec); '-' for None; '.3g' writes 1000 and above as 1,234, not 1.23e+03."""
    if value is None:
        return "-"
    if spec == ".3g" and abs(value) >= 1000:
        return f"{value:,.0f}"
    return format(value, spec)


def markdown_table(rows: list, columns: list) -> str:
    """columns: (header, fn(row) -> str) pairs."""
    lines = ["| " + " | ".join(h for h, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(f(r)) for _, f in columns) + " |")
    return "\n".join(lines)


# Columns shared by the length sweeps (scaling, ssm, attention, generate).
def status_cell(r):
    if r["status"] == OK:
        return OK + (f" ({r['note']})" if r.get("note") else "")
    return r["status"] + (f": {r['detail']}" if r.get("detail") else "")


TIMING_COLUMNS = [
    ("L", lambda r: length_label(r["length"])),
    ("status", status_cell),
    ("compile s", lambda r: fmt(r.get("compile_s"), ".1f")),
    ("median ms", lambda r: fmt(r.get("median_s") and r["median_s"] * 1e3, ".2f")),
    ("min-max ms", lambda r: "-" if r.get("min_s") is None else
     f"{r['min_s'] * 1e3:.2f}-{r['max_s'] * 1e3:.2f}"),
]
def mib(value):
    return fmt(None if value is None else value / MIB, ".0f")


PER_TOKEN_COLUMN = ("us/token", lambda r: fmt(per_token_us(r), ".3g"))
MEMORY_COLUMNS = [
    ("memory MiB", lambda r: mib(memory_above_base(r))),
    ("run MiB", lambda r: mib(memory_above_base(r, "run_peak_bytes"))),
    ("process peak MiB", lambda r: mib(r.get("peak_bytes"))),
]


def fits_table(fits: dict, what: str) -> str:
    if not fits:
        return "No fit: no series has two or more lengths measured."
    rows = [dict(series=k, **v) for k, v in fits.items()]
    return markdown_table(rows, [
        ("series", lambda r: r["series"]),
        (f"exponent of {what}", lambda r: f"{r['exponent']:.2f}"),
        ("lengths", lambda r: f"{length_label(r['from'])}..{length_label(r['to'])} "
                              f"({r['points']} points)")])


def output_dir(name: str, out=None) -> str:
    """A fresh folder for the results: `out` (refused if it exists and is not empty), else
    benchmarks/results/<name>/<timestamp> (refused if it exists)."""
    if out:
        if os.path.isdir(out) and os.listdir(out):
            raise PathError(f"--out {out} exists and is not empty: results are never "
                            f"overwritten; choose another --out")
        if os.path.exists(out) and not os.path.isdir(out):
            raise PathError(f"--out {out} exists and is not a folder")
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as e:
            raise PathError(f"--out {out} cannot be made ({e.strerror or e})") from None
        return out
    path = os.path.join(RESULTS, name, datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    try:
        os.makedirs(path)
    except FileExistsError:
        raise PathError(f"{path} exists: results are never overwritten; rerun or pass --out")
    return path


GUIDES = ((1, "slope 1 (linear)"), (2, "slope 2 (quadratic)"))
# For quantities per token: flat = linear in L per sequence, slope 1 = quadratic.
PER_TOKEN_GUIDES = ((0, "flat (linear per sequence)"), (1, "slope 1 (quadratic per sequence)"))


def loglog_plot(path: str, panels: list, title: str, ncols: int = 2) -> None:
    """Log-log line plots, written to `path` (PNG).

    panels: dicts with 'title', 'ylabel', 'series' ({label: (xs, ys)}), and optionally 'xlabel'
    (default: sequence length L) and 'guides' ((slope, label) pairs drawn as grey lines through
    the lowest first point; default GUIDES; () for none).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 4.8 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels):
        xs_all = sorted({x for xs, _ in panel["series"].values() for x in xs})
        for label, (xs, ys) in panel["series"].items():
            if len(xs):
                ax.plot(xs, ys, marker="o", label=label)
        starts = [(xs[0], ys[0]) for xs, ys in panel["series"].values() if len(xs)]
        if len(xs_all) > 1:
            x0, y0 = min(starts)
            x = np.array([xs_all[0], xs_all[-1]], float)
            for (slope, label), style in zip(panel.get("guides", GUIDES), (":", "--", "-.")):
                ax.plot(x, y0 * (x / x0) ** slope, style, color="gray", linewidth=0.8, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        if xs_all:
            ax.set_xticks(xs_all, [length_label(int(x)) for x in xs_all])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.legend(fontsize=7)
        ax.set_xlabel(panel.get("xlabel", "sequence length L"))
        ax.set_ylabel(panel["ylabel"])
        ax.set_title(panel["title"], fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def series_points(rows: list, value, *, key=lambda r: r["label"]) -> dict:
    """{series label (with its stop reason): (lengths, values)} of the ok rows, for a plot."""
    out, stops = {}, {}
    for r in rows:
        name = key(r)
        out.setdefault(name, ([], []))
        if r["status"] == OK and value(r) is not None:
            out[name][0].append(r["length"])
            out[name][1].append(value(r))
        elif r["status"] != SKIPPED:
            stops[name] = f"{r['status']} at {length_label(r['length'])}"
    return {(f"{k} ({stops[k]})" if k in stops else k): v for k, v in out.items()}


def write_report(out_dir: str, name: str, *, header: dict, args, sections: list,
                 targets: list = (), rows: list = (), data: dict = None, plot=None) -> str:
    """Writes <name>.json, <name>.md (and <name>.png via plot(path) if given) into out_dir and
    prints the markdown body. sections: (title, markdown) pairs. Returns the markdown."""
    header = dict(header, **RUNTIME)
    if hasattr(os, "getloadavg"):
        header["load_average_end"] = os.getloadavg()
    png = os.path.join(out_dir, f"{name}.png")
    if plot is not None:
        plot(png)
    body = [f"# {name}", "", machine_line(header), ""]
    for title, text in sections:
        body += [f"## {title}", "", text, ""]
    if targets:
        body += ["## Targets", ""] + [f"- {t['line']}" for t in targets] + [""]
    if plot is not None:
        body += [f"![{name}]({name}.png)", ""]
    markdown = "\n".join(body)
    with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
        f.write(markdown)
    record = {"benchmark": name, "header": header, "flags": flags_record(args),
              "rows": list(rows), "targets": list(targets), **(data or {})}
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(record, f, indent=1, default=str)
    print(markdown)
    print(f"results written to {out_dir}")
    return markdown


# ---------------------------------------------------------------------------------------------
# The machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git() -> dict:
    def run(*cmd):
        try:
            return subprocess.run(["git", "-C", ROOT, *cmd], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": run("rev-parse", "HEAD") or None,
            "dirty": bool(run("status", "--porcelain", "--untracked-files=no"))}


def probe() -> dict:
    """(In a point; benchmarks.point adds it to every result.) What the JAX runtime sees."""
    import jax
    device = jax.devices()[0]
    return {"backend": jax.default_backend(), "device_kind": device.device_kind,
            "device_count": jax.device_count(),
            "matmul_precision": str(jax.config.jax_default_matmul_precision),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "allocator": allocator.active() or "system malloc"}


def machine_header() -> dict:
    """The machine and software of a run; the JAX runtime's side (backend, device kind, ...)
    is added from the points' reports (RUNTIME) when the report is written."""
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(), "cpu": _cpu_model(), "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(host.meminfo().get("MemTotal", 0) / 2**30, 1) or None,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "jax": _version("jax"), "jaxlib": _version("jaxlib"),
        "flax": _version("flax"), "git": _git(),
    }


def machine_line(header: dict) -> str:
    git = header.get("git") or {}
    commit = (git.get("commit") or "?")[:10] + (" (dirty)" if git.get("dirty") else "")
    load = "; load average at start {} and end {}".format(*(
        "/".join(f"{x:.1f}" for x in header[k]) if header.get(k) else "?"
        for k in ("load_average", "load_average_end")))
    return (f"Machine: {header.get('host')}, {header.get('cpu')}, {header.get('cores')} cores, "
            f"{header.get('memory_gib')} GiB; backend {header.get('backend')} "
            f"({header.get('device_kind')} x{header.get('device_count')}); jax "
            f"{header.get('jax')}, jaxlib {header.get('jaxlib')}, flax {header.get('flax')}; "
            f"allocator {header.get('allocator', '?')}; "
            f"commit {commit}; {header.get('date')}{load}.")


def start(name: str, args) -> tuple:
    """(output folder, machine header) for a run."""
    out = output_dir(name, args.out)
    header = machine_header()
    if args.quick:
        print("--quick: a smoke run at tiny sizes; the numbers mean nothing", file=sys.stderr)
    return out, header


def text_config(arg: str = ""):
    """The LRA Text experiment config (configs/text.py's get_config(arg); arg as on the command
    line: 'model=<family>', ',quick', ...), an ml_collections.ConfigDict."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_text_config",
                                                  os.path.join(ROOT, "configs", "text.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def text_model(arg: str = "", **changes) -> dict:
    """The Text config's model (see `text_config`) as a dict of ModelConfig fields, with
    `changes` applied (dotted keys for S4: 's4.d_state'), checked by ModelConfig."""
    from lra.configs import set_dotted
    from spade_jax.config import ModelConfig
    model = set_dotted(text_config(arg).model.to_dict(), changes)
    ModelConfig.from_config(model)  # checked here, before any process starts
    return model


# Tiny sizes for --quick runs (and the tests): the same model families at a width of 32.
QUICK_MODEL = {"d_model": 32, "num_heads": 2, "d_ff": 64, "num_layers": 2, "radius": 15,
               "chunk_size": 16, "s4.d_state": 8}


def exit_code(rows: list) -> int:
    """1 if any point failed with an error (a bug, not a budget), else 0."""
    return 1 if any(r.get("status") == ERROR for r in rows) else 0
