"""`python -m spade_jax.local_cluster`: N JAX processes on this machine joined by a localhost
coordinator (the code: spade_jax/runtime/local_cluster.py)."""
import sys

from spade_jax.runtime.local_cluster import main

if __name__ == "__main__":
    sys.exit(main())
