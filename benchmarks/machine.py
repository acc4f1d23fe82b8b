"""The machine header of a run: host, CPU, cores, memory, Python / JAX / jaxlib / Flax
versions, the git commit (dirty or not) and the load average (`machine_header`, in the parent),
plus what the points' JAX runtime reports (`probe`, in a point: backend, device kind and count,
matmul precision, XLA flags, allocator), merged in by benchmarks.isolation.run_point."""
import datetime
import importlib.metadata
import os
import platform
import subprocess

from benchmarks import ROOT
from spade_jax.runtime import allocator, host


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


def load_average():
    """The 1, 5 and 15 minute load averages, or None where the system has none."""
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def machine_header() -> dict:
    """The machine and software of a run; the JAX runtime's side (backend, device kind, ...)
    is merged in from the points' reports (see benchmarks.isolation.run_point)."""
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(), "cpu": _cpu_model(), "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(host.meminfo().get("MemTotal", 0) / 2**30, 1) or None,
        "load_average": load_average(),
        "python": platform.python_version(), "jax": _version("jax"), "jaxlib": _version("jaxlib"),
        "flax": _version("flax"), "git": _git(),
    }


def machine_line(header: dict) -> str:
    """The header as the one line that opens a report."""
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
