"""The host's memory as Linux reports it (/proc), for the engine's memory check and the
benchmarks' budgets and peaks."""


def meminfo(path: str = "/proc/meminfo") -> dict:
    """The fields of /proc/meminfo (or of a /proc/<pid>/status file) in bytes, e.g.
    'MemAvailable', 'MemTotal', 'VmRSS', 'VmHWM'; {} where the file is missing (not Linux)."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                parts = value.split()
                if parts and parts[0].isdigit():
                    out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    except OSError:
        pass
    return out
