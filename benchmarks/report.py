"""A benchmark's output: the fresh output folder (`start`, `output_dir`), markdown tables and
the columns the length sweeps share, and `write_report`: <name>.json (machine header, flags,
every row, targets and the benchmark's own data), <name>.md (the tables, fits and target lines)
and <name>.png (through the benchmark's plot function), into a folder that is never
overwritten (default benchmarks/results/<name>/<timestamp>)."""
import datetime
import json
import os
import sys

from benchmarks import ROOT, machine
from benchmarks.flags import flags_record, length_label
from benchmarks.rows import MIB, OK, memory_above_base, per_token_us
from spade_jax.runtime.errors import PathError

RESULTS = os.path.join(ROOT, "benchmarks", "results")


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


def mib(value) -> str:
    """Bytes as a MiB cell ('-' for None)."""
    return fmt(None if value is None else value / MIB, ".0f")


def markdown_table(rows: list, columns: list) -> str:
    """columns: (header, fn(row) -> str) pairs."""
    lines = ["| " + " | ".join(h for h, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(f(r)) for _, f in columns) + " |")
    return "\n".join(lines)


def status_cell(r) -> str:
    """'ok', 'ok (<note>)' or '<status>: <detail>'."""
    if r["status"] == OK:
        return OK + (f" ({r['note']})" if r.get("note") else "")
    return r["status"] + (f": {r['detail']}" if r.get("detail") else "")


# Columns shared by the length sweeps (scaling, ssm, attention, generate, reproduce).
TIMING_COLUMNS = [
    ("L", lambda r: length_label(r["length"])),
    ("status", status_cell),
    ("compile s", lambda r: fmt(r.get("compile_s"), ".1f")),
    ("median ms", lambda r: fmt(r.get("median_s") and r["median_s"] * 1e3, ".2f")),
    ("min-max ms", lambda r: "-" if r.get("min_s") is None else
     f"{r['min_s'] * 1e3:.2f}-{r['max_s'] * 1e3:.2f}"),
]
PER_TOKEN_COLUMN = ("us/token", lambda r: fmt(per_token_us(r), ".3g"))
MEMORY_COLUMNS = [
    ("memory MiB", lambda r: mib(memory_above_base(r))),
    ("run MiB", lambda r: mib(memory_above_base(r, "run_peak_bytes"))),
    ("process peak MiB", lambda r: mib(r.get("peak_bytes"))),
]


def output_dir(name: str, out=None, results: str = RESULTS) -> str:
    """A fresh folder for the results: `out` (refused if it exists and is not empty), else
    <results>/<name>/<timestamp> (refused if it exists)."""
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
    path = os.path.join(results, name, datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    try:
        os.makedirs(path)
    except FileExistsError:
        raise PathError(f"{path} exists: results are never overwritten; rerun or pass --out")
    return path


def start(name: str, args) -> tuple:
    """(output folder, machine header) for a run; pass the header to the points (runtime=) and
    to `write_report`."""
    out = output_dir(name, args.out)
    header = machine.machine_header()
    if args.quick:
        print("--quick: a smoke run at tiny sizes; the numbers mean nothing", file=sys.stderr)
    return out, header


def write_report(out_dir: str, name: str, *, header: dict, args, sections: list,
                 targets: list = (), rows: list = (), data: dict = None, plot=None) -> str:
    """Writes <name>.json, <name>.md (and <name>.png via plot(path) if given) into out_dir and
    prints the markdown body. sections: (title, markdown) pairs. Returns the markdown."""
    header = dict(header)
    if machine.load_average() is not None:
        header["load_average_end"] = machine.load_average()
    png = os.path.join(out_dir, f"{name}.png")
    if plot is not None:
        plot(png)
    body = [f"# {name}", "", machine.machine_line(header), ""]
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
