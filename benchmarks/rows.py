"""A row of results: one point (one configuration at one length), a dict with 'status' and, when
ok, what the point function returned ('median_s', 'tokens', ...) and what the harness measured
('base_bytes', 'peak_bytes', 'run_peak_bytes', 'wall_s'). Statuses and derived quantities."""
OK = "ok"
OUT_OF_MEMORY = "out of memory"
OUT_OF_TIME = "out of time"
SKIPPED = "skipped"
ERROR = "error"
MIB = 2.0**20


def find(rows: list, **match):
    """The first row whose fields equal `match`, or None."""
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


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


def exit_code(rows: list) -> int:
    """1 if any point failed with an error (a bug, not a budget), else 0."""
    return 1 if any(r.get("status") == ERROR for r in rows) else 0
