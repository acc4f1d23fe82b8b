"""Paths: where spade-jax keeps what it writes on its own (generated data, token caches), how it
writes a folder (complete or not at all), how it reads users' text files, and the one path layer
for a run's workdir.

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
import re
import shutil
import socket
import tempfile
import time

from etils import epath

from spade_jax.runtime.errors import DataError, PathError

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


def read_json(path, expect=None):
    """The JSON value in `path`; a DataError (a ValueError) naming the file when it is not valid
    JSON or (with `expect`, e.g. dict) not of that type."""
    path = workdir_path(path)
    advice = ("it was written by an interrupted or another program. Move it aside or use a new "
              "--workdir")
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: "
                        f"{e.msg}); {advice}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not valid JSON (byte {e.start} is not UTF-8); "
                        f"{advice}") from None
    if expect is not None and not isinstance(value, expect):
        raise DataError(f"{path} holds a JSON {type(value).__name__}, not the "
                        f"{'object' if expect is dict else expect.__name__} this program "
                        f"wrote; {advice}")
    return value


def text_lines(path):
    """Yields (line number, text) of each line of a UTF-8 text file (line ends kept), reading
    bytes, so that a byte that is not UTF-8 is a DataError naming the file, the line and its
    byte offset in the file."""
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}, line {number}, byte offset {offset + e.start}: byte "
                    f"0x{raw[e.start]:02x} is not UTF-8 ({e.reason}); the file must be UTF-8 text "
                    f"(convert it, e.g. iconv -f latin1 -t utf-8)") from None
            yield number, text
            offset += len(raw)


def cache_root() -> str:
    """$SPADE_JAX_CACHE, else $XDG_CACHE_HOME/spade_jax, else ~/.cache/spade_jax."""
    if os.environ.get("SPADE_JAX_CACHE"):
        return os.environ["SPADE_JAX_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "spade_jax")


STALE_TEMP_S = 24 * 3600  # another host's temporary folder untouched this long is abandoned


def _temp_tag() -> str:
    return f"tmp@{socket.gethostname()}@{os.getpid()}@"


def _abandoned(parent: str, name: str, prefix: str) -> bool:
    """True for a temporary folder of `temp_folder` whose process is gone: a dead process of
    this host, or (another host) one untouched for STALE_TEMP_S."""
    match = re.fullmatch(re.escape(prefix) + r"tmp@(?P<host>[^@]+)@(?P<pid>\d+)@.*", name)
    if not match:
        return False
    if match["host"] == socket.gethostname():
        try:
            os.kill(int(match["pid"]), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    try:
        return time.time() - os.path.getmtime(os.path.join(parent, name)) > STALE_TEMP_S
    except OSError:
        return False


@contextlib.contextmanager
def temp_folder(parent: str, prefix: str, what: str = "files", hint: str = ""):
    """Yields a new folder in `parent` (made if missing, and removed again if it is left empty),
    named after this process, and removes it when the block ends. First removes the folders of this prefix that processes killed while
    building (kill -9, a lost host) left in `parent`. A `parent` that cannot be written is a
    PathError: 'cannot write {what} in {parent} (why); {hint}'."""
    made = not os.path.exists(parent)
    try:
        os.makedirs(parent, exist_ok=True)
        for name in os.listdir(parent):
            if _abandoned(parent, name, prefix):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        tmp = tempfile.mkdtemp(prefix=prefix + _temp_tag(), dir=parent)
    except OSError as e:
        raise PathError(f"cannot write {what} in {parent} ({e.strerror or e})"
                        + (f"; {hint}" if hint else "")) from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if made:  # a folder made here and left empty (the build failed or was interrupted)
            try:
                os.rmdir(parent)
            except OSError:
                pass


@contextlib.contextmanager
def atomic_folder(folder: str, prefix: str = ".tmp-", what: str = "files", hint: str = ""):
    """Yields a new temporary folder beside `folder` to fill (see `temp_folder`); when the block
    completes it is renamed to `folder` (unless another process got there first), so `folder`
    is either absent or complete."""
    with temp_folder(os.path.dirname(os.path.abspath(folder)), prefix, what, hint) as tmp:
        yield tmp
        try:
            os.replace(tmp, folder)
        except OSError:  # `folder` exists: built by another process meanwhile
            pass


def refuse_existing(targets, overwrite: bool, flag: str = "--overwrite") -> None:
    """A PathError naming the first of `targets` that holds something (a file, a folder that is
    not empty), unless `overwrite`."""
    for target in targets:
        if overwrite or not os.path.lexists(target):
            continue
        if os.path.isdir(target) and not os.path.islink(target) and not os.listdir(target):
            continue
        raise PathError(f"{target} exists: data is never overwritten. Choose another output "
                        f"folder, or pass {flag} to replace it")


def publish(source: str, target: str, trash: str) -> None:
    """Moves the complete file or folder `source` to `target` (same file system). An existing
    `target` is first moved into the folder `trash` (removed by its owner)."""
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    if os.path.lexists(target):
        os.replace(target, os.path.join(trash, f"old-{os.path.basename(target)}"))
    os.replace(source, target)
