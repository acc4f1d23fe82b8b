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

# LLVM's optimisation level 0: the suite's programs are compiled far more than they are run, and
# at level 0 XLA's CPU backend compiled tests/models and tests/ssm/test_chunked.py in 0.7x the
# time; with the checkpoint change of the same day the whole suite took 28 instead of 37.5 CPU
# minutes (2-core CI machine kind). HLO passes (fusion, layout, memory) are unchanged; training
# subprocesses inherit the flags.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                                   "--xla_backend_optimization_level=0")
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


# The longest files first (minutes each on 2 cores; `--dist loadfile` keeps a file on one
# worker): started last, test_multiprocess.py ran alone for its last minutes while the other
# worker idled. Longest-first keeps both workers busy to the end; order within a file is kept.
LONGEST_FIRST = ("tests/train/test_multiprocess.py", "tests/train/test_engine.py",
                 "tests/lra/test_experiments.py", "tests/lm/test_experiment.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable
