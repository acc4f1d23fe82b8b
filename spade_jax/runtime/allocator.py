"""A memory allocator that keeps freed pages, for CPU runs (Linux).

XLA's CPU runtime allocates its temporary buffers afresh at every call of a compiled step. With
glibc's malloc, every buffer above 32 MiB is a fresh mmap, so each step page-faults its whole
working set in again and hands it back. jemalloc configured never to return freed pages
(`dirty_decay_ms:-1`) keeps them mapped. Measured on the 2-core CI machine, the LRA Text
training step (L = 4K, batch 4): 3.4 s and 6.5 GB resident with jemalloc, 5.2 s and 2.9 GB with
glibc's malloc (an element-wise add of two 33 MiB arrays: 6 ms with tcmalloc, 20 ms with
glibc's). The cost is memory: the process keeps the pages of its peak, and some fragmentation.
tcmalloc also works.

The allocator must be loaded before the process starts (LD_PRELOAD), so the entry points
(`python -m lra.main`, `python -m lm.main`, the benchmark points) call `reexec_if_needed()`
first: it re-executes the same command line once with the library preloaded. It does nothing
when the library is not installed (Debian / Ubuntu: `apt install libjemalloc2`), on other
systems, on a machine with a GPU or TPU (whose host allocations are small) unless
JAX_PLATFORMS=cpu, and when the choice is `system`.

    SPADE_JAX_MALLOC = auto (default: jemalloc, else tcmalloc, else the system's)
                     | jemalloc | tcmalloc (an error when not found) | system (leave malloc alone)
"""
from __future__ import annotations

import glob
import os
import sys

ENV = "SPADE_JAX_MALLOC"
_EXEC_GUARD = "SPADE_JAX_MALLOC_EXEC"  # set in the re-executed process: never loop
CHOICES = ("auto", "jemalloc", "tcmalloc", "system")
LIBRARIES = {
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so"),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so"),
}
# Keep freed pages mapped (no decay back to the OS): what makes the steps fast.
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
SEARCH_DIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
               "/usr/lib", "/usr/local/lib", os.path.join(sys.prefix, "lib")]
INSTALL_HINT = {"jemalloc": "apt install libjemalloc2 (Debian / Ubuntu), dnf install jemalloc",
                "tcmalloc": "apt install libtcmalloc-minimal4 (Debian / Ubuntu), "
                            "dnf install gperftools-libs"}


def find(name: str) -> str | None:
    """Path of the shared library of allocator `name` ('jemalloc' | 'tcmalloc'), or None."""
    for directory in SEARCH_DIRS:
        for filename in LIBRARIES[name]:
            path = os.path.join(directory, filename)
            if os.path.isfile(path):
                return path
    return None


def _choice(env) -> str:
    choice = env.get(ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"{ENV}={env.get(ENV)!r}: expected one of {', '.join(CHOICES)}")
    return choice


def wanted(env=None) -> bool:
    """False when SPADE_JAX_MALLOC=system asks for the system's malloc, True otherwise.
    Raises ValueError for an unknown value."""
    return _choice(os.environ if env is None else env) != "system"


def choose(env=None) -> tuple[str | None, str | None]:
    """(allocator name, library path) that SPADE_JAX_MALLOC asks for, or (None, None) for the
    system's. Raises ValueError for an unknown value or an explicitly named, missing library."""
    env = os.environ if env is None else env
    choice = _choice(env)
    if choice == "system":
        return None, None
    for name in (("jemalloc", "tcmalloc") if choice == "auto" else (choice,)):
        path = find(name)
        if path:
            return name, path
    if choice != "auto":
        raise ValueError(f"{ENV}={choice}: no {choice} library in {', '.join(SEARCH_DIRS)} "
                         f"({INSTALL_HINT[choice]}), or set {ENV}=system")
    return None, None


def active() -> str | None:
    """The allocator loaded in this process ('jemalloc', 'tcmalloc'), or None (Linux only)."""
    try:
        with open("/proc/self/maps") as maps:
            text = maps.read()
    except OSError:
        return None
    for name in LIBRARIES:
        if f"lib{name}" in text:
            return name
    return None


def _accelerator_present() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*") or glob.glob("/dev/accel[0-9]*")
                or glob.glob("/dev/vfio/[0-9]*"))


def preload_env(env=None) -> dict:
    """A copy of `env` (default os.environ) that preloads the chosen allocator in a child
    process: LD_PRELOAD (in front of any already there) and, for jemalloc, MALLOC_CONF. Unchanged
    when the choice is the system's, nothing is found, or an allocator is already preloaded."""
    env = dict(os.environ if env is None else env)
    name, path = choose(env)
    preload = env.get("LD_PRELOAD", "")
    if not sys.platform.startswith("linux") or path is None or any(
            f"lib{n}" in preload for n in LIBRARIES):
        return env
    env["LD_PRELOAD"] = f"{path}:{preload}" if preload else path
    if name == "jemalloc":
        env["MALLOC_CONF"] = ",".join(filter(None, [JEMALLOC_CONF, env.get("MALLOC_CONF")]))
    env[_EXEC_GUARD] = "1"
    return env


def reexec_if_needed() -> None:
    """At the top of an entry point's `if __name__ == "__main__":`: re-execute this command line
    once with the allocator preloaded (see the module docstring); returns when nothing is to be
    done. Only entry points call it: it replaces the running process."""
    if (not sys.platform.startswith("linux") or os.environ.get(_EXEC_GUARD) or active()
            or not hasattr(sys, "orig_argv")):
        return
    if os.environ.get("JAX_PLATFORMS", "").lower() != "cpu" and _accelerator_present():
        return
    env = preload_env()
    if "LD_PRELOAD" not in env or env.get("LD_PRELOAD") == os.environ.get("LD_PRELOAD"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)
