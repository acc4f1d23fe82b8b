"""What the rows show: growth exponents (`fit_exponent`, `fit_series`, `growth` with its report
sections), time ratios between series (`time_ratio`) and the issue's target lines (`target`,
`why_missing`)."""
import numpy as np

from benchmarks.flags import length_label
from benchmarks.report import markdown_table
from benchmarks.rows import OK, find, memory_above_base


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


def fits_table(fits: dict, what: str) -> str:
    """A markdown table of `fit_series`'s fits: series, exponent of <what>, lengths."""
    if not fits:
        return "No fit: no series has two or more lengths measured."
    rows = [dict(series=k, **v) for k, v in fits.items()]
    return markdown_table(rows, [
        ("series", lambda r: r["series"]),
        (f"exponent of {what}", lambda r: f"{r['exponent']:.2f}"),
        ("lengths", lambda r: f"{length_label(r['from'])}..{length_label(r['to'])} "
                              f"({r['points']} points)")])


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
