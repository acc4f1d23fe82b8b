"""Where spade-jax keeps what it writes on its own (generated data, token caches)."""
import os


def cache_root() -> str:
    """$SPADE_JAX_CACHE, else $XDG_CACHE_HOME/spade_jax, else ~/.cache/spade_jax."""
    if os.environ.get("SPADE_JAX_CACHE"):
        return os.environ["SPADE_JAX_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "spade_jax")
