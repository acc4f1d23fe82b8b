"""Where spade-jax keeps what it writes on its own (generated data, token caches)."""
import contextlib
import os
import shutil
import tempfile


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
