"""Paths: where spade-jax keeps what it writes on its own (generated data, token caches), and
the one path layer for a run's workdir.

A workdir is a local folder or an object-storage URL (`gs://bucket/runs/pathx`, `s3://...`):
orbax writes the checkpoints there itself, and everything else a run writes or reads there
(config.json, results.json, metrics.jsonl, plots) goes through `workdir_path` and the helpers
below, built on etils.epath (the path library orbax uses; gs:// needs gcsfs or TensorFlow's
gfile, as for orbax). Local writes are atomic (a temporary file renamed); an object-storage
write is one upload, atomic by itself.
"""
import contextlib
import json
import os
import shutil
import tempfile

from etils import epath

URL_SCHEMES = ("gs://", "s3://", "az://")


def is_url(path) -> bool:
    return str(path).startswith(URL_SCHEMES)


def workdir_path(path) -> epath.Path:
    """An epath.Path for a local path (made absolute) or an object-storage URL."""
    return epath.Path(str(path) if is_url(path) else os.path.abspath(os.fspath(path)))


def write_bytes(path, data: bytes) -> None:
    """Writes `data` to `path` (local: into a temporary file renamed over it; URL: one upload)."""
    path = workdir_path(path)
    if is_url(path):
        path.write_bytes(data)
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_json(path, value) -> None:
    write_bytes(path, (json.dumps(value, indent=2) + "\n").encode())


def read_json(path):
    """The JSON value in `path`; a ValueError naming the file when it is not valid JSON."""
    path = workdir_path(path)
    text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: "
                         f"{e.msg}); it was written by an interrupted or another program. Move it "
                         f"aside or use a new --workdir") from None


def cache_root() -> str:
    """$SPADE_JAX_CACHE, else $XDG_CACHE_HOME/spade_jax, else ~/.cache/spade_jax."""
    if os.environ.get("SPADE_JAX_CACHE"):
        return os.environ["SPADE_JAX_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "spade_jax")


@contextlib.contextmanager
def atomic_folder(folder: str, prefix: str = ".tmp-"):
    """Yields a new temporary folder beside `folder` to fill; when the block completes it is
    renamed to `folder` (unless another process got there first), so `folder` is either absent
    or complete. The temporary folder is removed in any case."""
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield tmp
        try:
            os.replace(tmp, folder)
        except OSError:  # `folder` exists: built by another process meanwhile
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
