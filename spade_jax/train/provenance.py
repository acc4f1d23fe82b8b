"""How a run was made, kept in WORKDIR/config.json and results.json: the versions of the
libraries, the code's git commit (and whether its tree had uncommitted changes), the devices,
processes and mesh, and a hash of the config.

Nothing here fails a run: what cannot be found (a package not installed, an installed copy that
is no git checkout, no git program) is None.
"""
import hashlib
import importlib.metadata
import json
import os
import subprocess

import jax

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def versions() -> dict:
    """{package: version or None} of the libraries that decide a run's numbers."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(folder, *args) -> str | None:
    try:
        done = subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True,
                              timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def git_state(folder: str | None = None) -> dict:
    """{'commit': the HEAD commit of the checkout holding `folder` (default: this package's),
    'dirty': whether tracked files differ from it (as `git describe --dirty`)}; both None when
    it is not a git checkout."""
    folder = folder or os.path.dirname(os.path.abspath(__file__))
    commit = _git(folder, "rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "dirty": None}
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def config_hash(config) -> str:
    """The first 16 hex digits of the SHA-256 of the config's JSON (keys sorted)."""
    values = json.loads(config.to_json_best_effort())
    values.pop("provenance", None)
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def collect(config, mesh) -> dict:
    """The provenance record of an invocation with `config` on `mesh`."""
    devices = jax.devices()
    return {"versions": versions(), "git": git_state(),
            "device_kind": devices[0].device_kind, "platform": devices[0].platform,
            "device_count": len(devices), "process_count": jax.process_count(),
            "mesh": {name: int(size) for name, size in mesh.shape.items()},
            "config_hash": config_hash(config)}
