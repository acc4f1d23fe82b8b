"""Test configuration shared by the whole suite.

Eight simulated CPU devices are requested before JAX is imported anywhere, so sharding code is
tested on a real multi-device mesh even on a one-CPU machine.

The suite is compile-bound, and many tests (and the training processes they start, which inherit
the environment) compile the same small programs: one persistent JAX compilation cache, a fresh
folder per run (made by the first process, the xdist controller; the workers inherit it) and
deleted at its end, serves every process of the run. Executables are keyed by their program, JAX
version and flags, so a hit is the executable a fresh compile would give.
"""
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="spade-jax-tests-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
else:
    _CACHE = None  # the controller's (or the user's): not ours to delete

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def pytest_sessionfinish(session, exitstatus):
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)
