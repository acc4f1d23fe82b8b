"""Series over increasing lengths (`run`): one fresh process per point, the series run side by
side (length by length), each stopped at its first failure, the longer lengths recorded as
skipped with the reason."""
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


def run(series: list, lengths: list, args, fn: str, *, runtime=None, until=None,
        side_by_side=True) -> list:
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
    side_by_side: the points run length by length, every series at one length before the next
    length, so the points a ratio compares run close together in time (a host whose speed
    drifts skews ratios between points minutes apart); False runs each series through all its
    lengths in turn. The rows come back series by series, in increasing length, either way.
    """
    plan = [(i, length) for i, s in enumerate(series) for length in s.get("lengths", lengths)]
    if side_by_side:
        plan.sort(key=lambda point: point[1])  # stable: the series' order within a length
    stopped, done = {}, {}
    for i, length in plan:
        s = series[i]
        meta = {k: v for k, v in s.items() if k not in ("kwargs", "lengths")}
        if i not in stopped and until is not None and time.monotonic() >= until:
            stopped[i] = "the time budget was spent"
        if i in stopped:
            done[i, length] = dict(meta, length=length, status=SKIPPED, detail=stopped[i])
            continue
        kwargs = dict(s["kwargs"], length=length, repeats=args.repeats, warmup=args.warmup,
                      deadline=timing.deadline_after(args.timeout_s))
        row = dict(meta, length=length, **isolation.run_point(
            fn, kwargs, timeout_s=args.timeout_s, memory_gb=args.memory_gb, runtime=runtime))
        print(f"  {s['label']} L={length_label(length)}: {describe(row)}", file=sys.stderr,
              flush=True)
        done[i, length] = row
        if row["status"] != OK:
            stopped[i] = f"stopped at L={length_label(length)}: {row['status']}"
    return [done[i, length] for i, s in enumerate(series)
            for length in s.get("lengths", lengths)]
