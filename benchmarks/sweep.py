"""Series over increasing lengths (`run`): one fresh process per point, each series stopped at
its first failure, the longer lengths recorded as skipped with the reason."""
import sys
import time

from benchmarks import isolation, timing
from benchmarks.flags import length_label
from benchmarks.rows import MIB, OK, SKIPPED, memory_above_base


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


def run(series: list, lengths: list, args, fn: str, *, runtime=None, until=None) -> list:
    """Runs every series over `lengths` (increasing), one fresh process per point.

    series: dicts with 'label' (names the series), 'kwargs' (the point function's arguments,
    without 'length') and any other keys (family, scope, ...), which are copied into its rows.
    The point function `fn` ('module:function') also gets length, repeats, warmup (--repeats,
    --warmup) and deadline (benchmarks.timing.deadline_after(--timeout_s)); each point runs
    under --timeout_s and --memory_gb. runtime: see benchmarks.isolation.run_point.
    A series stops at its first point that is not ok: the longer lengths get status 'skipped'
    and the reason ('stopped at L=8K: out of memory'). until: a time.monotonic() deadline for
    the whole sweep (a time-boxed run's share); no point starts after it, each is 'skipped'.
    A series' own 'lengths' replaces `lengths` for that series.
    """
    rows = []
    for s in series:
        meta = {k: v for k, v in s.items() if k not in ("kwargs", "lengths")}
        stopped = None
        for length in s.get("lengths", lengths):
            if not stopped and until is not None and time.monotonic() >= until:
                stopped = "the time budget was spent"
            if stopped:
                rows.append(dict(meta, length=length, status=SKIPPED, detail=stopped))
                continue
            kwargs = dict(s["kwargs"], length=length, repeats=args.repeats, warmup=args.warmup,
                          deadline=timing.deadline_after(args.timeout_s))
            row = dict(meta, length=length, **isolation.run_point(
                fn, kwargs, timeout_s=args.timeout_s, memory_gb=args.memory_gb,
                runtime=runtime))
            print(f"  {s['label']} L={length_label(length)}: {describe(row)}", file=sys.stderr,
                  flush=True)
            rows.append(row)
            if row["status"] != OK:
                stopped = f"stopped at L={length_label(length)}: {row['status']}"
    return rows
