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
import signal
import subprocess
import sys
import tempfile

# The suite's programs are compiled far more than they are run, so XLA's CPU backend is set to
# compile fast: LLVM's optimisation level 0 (tests/models and tests/ssm/test_chunked.py compiled
# in 0.7x the time; with the checkpoint change of the same day the whole suite took 28 instead of
# 37.5 CPU minutes, 2-core CI machine kind) and fusions emitted by XLA's older elemental IR
# emitter instead of its MLIR fusion emitters (tests/train/test_engine.py and
# tests/models/test_models.py: 256 s against 344 s in one process; the synthetic training run's
# step compiled in 5.3-6.4 s against 8.4-9.1). HLO passes (fusion, layout, memory) are unchanged;
# training subprocesses inherit the flags. A jaxlib that no longer knows the second flag (XLA
# aborts on an unknown flag) runs without it: one short probe process decides.
_FAST_COMPILE = "--xla_cpu_use_fusion_emitters=false"


def _known_to_xla(flag: str) -> bool:
    env = dict(os.environ, XLA_FLAGS=flag, JAX_PLATFORMS="cpu")
    probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], env=env,
                           capture_output=True, timeout=120)
    return probe.returncode == 0


if "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = " ".join(
        ["--xla_force_host_platform_device_count=8", "--xla_backend_optimization_level=0"]
        + ([_FAST_COMPILE] if _known_to_xla(_FAST_COMPILE) else []))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="spade-jax-tests-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
else:
    _CACHE = None  # the controller's (or the user's): not ours to delete

# Several tests signal the processes they start (SIGHUP to a launcher, SIGINT to a training run)
# and wait for them to react. A suite started with those signals ignored (under nohup, or as
# `pytest &` in a script) would pass "ignored" on to every child, where a shell cannot trap them
# and Python raises no KeyboardInterrupt, and those tests would hang. Ignored signals stay
# ignored across exec, caught ones return to the default: so this process (and each xdist
# worker, told through the environment) catches them with a handler that does nothing. The
# suite stays as deaf to them as it was started, and its children start with the defaults.
_DEAF = "SPADE_JAX_TESTS_DEAF_TO"
for _name in filter(None, os.environ.get(_DEAF, "").split(",")):
    signal.signal(getattr(signal, _name), lambda *_: None)
_deaf = [n for n in ("SIGHUP", "SIGINT") if signal.getsignal(getattr(signal, n)) == signal.SIG_IGN]
if _deaf:
    os.environ[_DEAF] = ",".join(sorted(set(_deaf + os.environ.get(_DEAF, "").split(",")) - {""}))
    for _name in _deaf:
        signal.signal(getattr(signal, _name), lambda *_: None)

# The processes the tests start import this checkout: it goes first on their PYTHONPATH. Where
# another checkout is installed in development mode (`pip install -e`), a script run by path
# (tests/train/synthetic.py) would otherwise import that one, and a fresh clone tested on such a
# machine would test two versions at once (found: a run's provenance named the other commit).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != ROOT])

import jax  # noqa: E402
import pytest  # noqa: E402

if os.environ.get("SPADE_JAX_TEST_EXTRAS") == "1":  # a seventh task and a sixth family
    sys.path.insert(0, ROOT)
    from tests.extras import registrations  # noqa: E402
    registrations.register()

jax.config.update("jax_default_matmul_precision", "highest")


def pytest_sessionfinish(session, exitstatus):
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)


# Scheduling (pyproject: `-n 2 --dist loadscope --no-loadscope-reorder`, with the scopes below):
# xdist hands each worker one test at a time, in collection order, so both workers stay busy to
# the end. The files whose tests share an expensive module or session fixture go whole to one
# worker. (xdist's own loadgroup does not group under pytest 9.2, pytest-xdist#1386.) The
# longest files come first, so the run does not end with one of them running alone
# (test_multiprocess.py's reference runs take minutes on 2 cores).
LONGEST_FIRST = ("tests/train/test_multiprocess.py", "tests/test_aot.py",
                 "tests/train/test_engine.py", "tests/lm/test_experiment.py",
                 "tests/lra/test_experiments.py", "tests/test_hardening.py",
                 "tests/models/test_models.py")
SHARED_FIXTURES = ("tests/train/test_multiprocess.py", "tests/test_bad_inputs.py",
                   "tests/test_aot.py")


def _path(nodeid):
    return nodeid.split("::")[0]


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = _path(item.nodeid)
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook (the test extras install it)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            path = _path(nodeid)
            return path if path in SHARED_FIXTURES else nodeid

    return Scheduling(config, log)
