"""The process around the training loop: start-up, joining the other hosts, memory checks,
preemption, exit statuses.

An entry point (lra.main, lm.main) calls `start_process()` first; the loop uses `Preemption`
and `check_step_memory`. A run stopped by a preemption notice (SIGTERM) after saving its
checkpoint exits with `EXIT_PREEMPTED` (75, EX_TEMPFAIL: "try again"), so that SLURM, Kubernetes
and launch/*.sh see "not finished, rerun to resume"; 0 means the run finished (results.json).
"""
import os
import signal
import sys
import threading
import time

import jax
import numpy as np
from absl import flags, logging
from jax.experimental import multihost_utils

from spade_jax.runtime import accelerators, allocator, host
from spade_jax.runtime.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, ConfigError, UserError

EXIT_PREEMPTED = 75


class OutOfMemoryError(UserError, MemoryError):
    """A step that cannot fit in memory, found before it runs; the message names the config
    fields that shrink it."""


def start_process() -> None:
    """What an entry point does before anything else: keep orbax's and XLA's INFO logs (one per
    checkpoint save) off the progress bar unless --verbosity was given, and join the other
    processes of a multi-host run (`initialize_distributed`)."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    initialize_distributed()
    try:
        if accelerators.libtpu_version() is not None and not accelerators.tpu_attached():
            # libtpu (jax[tpu], for compiling for TPUs) looks for a TPU VM it is not on, aloud
            backend = accelerators.quietly(jax.default_backend)
        else:
            backend = jax.default_backend()
    except RuntimeError as e:  # a platform JAX_PLATFORMS asks for is not here
        if "Unable to initialize backend" not in str(e):
            raise
        raise ConfigError(f"{str(e).splitlines()[0]}: JAX_PLATFORMS="
                          f"{os.environ.get('JAX_PLATFORMS', '')!r} names a platform this "
                          f"machine does not have; unset JAX_PLATFORMS (JAX then takes what "
                          f"there is) or set it to one it has, e.g. cpu") from None
    if backend == "cpu" and allocator.active() is None and allocator.wanted():
        logging.warning("CPU run with the system's malloc: steps can take up to 1.7x longer "
                        "than with jemalloc (apt install libjemalloc2; the entry points then "
                        "preload it themselves; see spade_jax/runtime/allocator.py)")


STARTUP_TIMEOUT_S = 120  # default of SPADE_JAX_STARTUP_TIMEOUT: joining the other processes
JAX_CLUSTER_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize_distributed() -> None:
    """jax.distributed.initialize() where a multi-process platform is detected: SLURM jobs with
    several tasks, GKE TPU pods (TPU_WORKER_HOSTNAMES), or an explicit coordinator
    (JAX_COORDINATOR_ADDRESS, with JAX_NUM_PROCESSES and JAX_PROCESS_ID: what
    `python -m spade_jax.local_cluster` sets). A single host needs nothing.

    A Cloud TPU VM pod slice (`gcloud compute tpus tpu-vm create`, e.g. v4-32 = 4 hosts) sets no
    such variable: JAX finds its workers in the VM's metadata server. Set SPADE_JAX_DISTRIBUTED=1
    there (launch/tpu_vm.sh does) to call jax.distributed.initialize() unconditionally;
    SPADE_JAX_DISTRIBUTED=0 never calls it.

    An explicit coordinator's three variables are checked first (all or none, integers, the
    index below the count). Joining must finish within SPADE_JAX_STARTUP_TIMEOUT seconds
    (default 120): otherwise the process stops with one line naming the coordinator's address
    and this process, exit status 2 (JAX itself would abort with a C++ stack trace after 5
    minutes); Ctrl-C stops the wait."""
    env = os.environ
    forced = env.get("SPADE_JAX_DISTRIBUTED", "")
    if forced not in ("", "0", "1"):
        raise ConfigError(f"SPADE_JAX_DISTRIBUTED must be 0 or 1 (or unset), got {forced!r}")
    tpu_hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
    platform = len(tpu_hosts) > 1 or int(env.get("SLURM_NTASKS", "1") or 1) > 1
    explicit = _explicit_cluster(env, platform or forced == "1")
    if forced == "1" or (forced == "" and (platform or explicit)):
        _join(explicit, startup_timeout(env))


def startup_timeout(env) -> float:
    text = env.get("SPADE_JAX_STARTUP_TIMEOUT", "")
    try:
        value = float(text) if text else STARTUP_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"SPADE_JAX_STARTUP_TIMEOUT must be a positive number of seconds (how "
                          f"long the processes may take to join), got {text!r}")
    return value


def _explicit_cluster(env, other_platform: bool) -> dict:
    """{'coordinator_address', 'num_processes', 'process_id'} from JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID (those given; {} for none). Some but not all of them,
    outside a platform whose own detection fills in the rest (SLURM, a TPU pod), is a
    ConfigError: a process left without them would train alone."""
    given = {var: env[var].strip() for var in JAX_CLUSTER_VARS if env.get(var, "").strip()}
    if not given:
        return {}
    missing = [var for var in JAX_CLUSTER_VARS if var not in given]
    if missing and not other_platform:
        raise ConfigError(
            f"{', '.join(f'{v}={given[v]}' for v in given)} is set but {', '.join(missing)} "
            f"is not: a multi-process run needs all three (the coordinator's host:port, the "
            f"number of processes, and this process's index 0 .. N-1; python -m "
            f"spade_jax.runtime.local_cluster sets them). Unset {', '.join(given)} for one process.")
    out = {}
    for name, var in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
        if var in given:
            if not given[var].isdigit():
                raise ConfigError(f"{var} must be a whole number, got {given[var]!r}")
            out[name] = int(given[var])
    if "num_processes" in out and out["num_processes"] < 1:
        raise ConfigError("JAX_NUM_PROCESSES must be >= 1, got 0")
    if out.get("process_id", 0) >= out.get("num_processes", float("inf")):
        raise ConfigError(f"JAX_PROCESS_ID ({out['process_id']}) must be below "
                          f"JAX_NUM_PROCESSES ({out['num_processes']}): processes are numbered "
                          f"0 .. {out['num_processes'] - 1}")
    if "JAX_COORDINATOR_ADDRESS" in given:
        address = given["JAX_COORDINATOR_ADDRESS"]
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"JAX_COORDINATOR_ADDRESS must be host:port (process 0's "
                              f"machine and a free port), got {address!r}")
        out["coordinator_address"] = address
    return out


def _join(explicit: dict, timeout: float) -> None:
    """jax.distributed.initialize(**explicit), stopped with one clear line (exit 2) when the
    processes have not joined within `timeout` seconds. JAX's own wait cannot be interrupted
    from Python and ends in an abort: a watchdog thread ends the process first, and Ctrl-C
    ends it at once during the wait."""
    address = explicit.get("coordinator_address", "found by JAX's cluster detection")
    who = (f"process {explicit['process_id']} of {explicit['num_processes']}"
           if "process_id" in explicit and "num_processes" in explicit else "this process")
    if explicit.get("process_id") == 0:
        why = (f"{who} serves the coordinator at {address}, and not every other process joined "
               f"it: start them all with the same JAX_COORDINATOR_ADDRESS and JAX_NUM_PROCESSES")
    else:
        why = (f"{who} could not join the coordinator at {address}: is process 0 running there, "
               f"and is the port open between the hosts?")
    message = (f"error: the processes did not join within {timeout:g} s "
               f"(SPADE_JAX_STARTUP_TIMEOUT): {why}")

    def give_up():
        print(message, file=sys.stderr, flush=True)
        os._exit(EXIT_USER_ERROR)

    watchdog = threading.Timer(timeout, give_up)
    watchdog.daemon = True
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: stop, no traceback
    watchdog.start()
    try:
        jax.distributed.initialize(**explicit, initialization_timeout=int(timeout) + 60)
    finally:
        watchdog.cancel()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def multi_process() -> bool:
    """True in a run of several JAX processes joined by jax.distributed.initialize()."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


class Preemption:
    """A preemption notice (SIGTERM) or Ctrl-C (SIGINT) turned into one step at which every
    process saves and stops.

    Several processes: the notice may reach only some hosts (a maintenance event on one worker,
    a spot VM reclaimed), at different steps. JAX's preemption sync manager (started by
    jax.distributed.initialize, with its own SIGTERM handler) spreads it through the coordinator
    and picks the first step every process can still reach; `reached(step)` is True there, on
    every process (`multihost_utils.reached_preemption_sync_point`, called at every step). A
    Ctrl-C there is passed on as a SIGTERM to this process, so it travels the same way.
    One process: the handler sets a flag that `reached` reports at the next step.
    `interrupted` says that Ctrl-C started it (the entry points then exit with 130, not 75). A
    second Ctrl-C stops the process at once, without saving.
    Use as a context manager around the training loop (it restores the previous handlers)."""

    def __init__(self):
        self._flag = False
        self.interrupted = False
        self._previous = {}
        self._synced = multi_process()

    def __enter__(self):
        wanted = {signal.SIGINT: self._interrupt}
        if not self._synced:  # JAX's notifier owns SIGTERM in multi-process runs: keep it
            wanted[signal.SIGTERM] = self._handle
        for signum, handler in wanted.items():
            try:
                self._previous[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread: no handler
                pass
        return self

    def _handle(self, signum, frame):
        self._flag = True

    def _interrupt(self, signum, frame):
        if self.interrupted:  # the second Ctrl-C
            print("\ninterrupted again (Ctrl-C): stopping now, without saving", file=sys.stderr,
                  flush=True)
            os._exit(EXIT_INTERRUPTED)
        self.interrupted = True
        print("\ninterrupted (Ctrl-C): saving a checkpoint at the next step, then stopping "
              "(Ctrl-C again stops at once, without saving)", file=sys.stderr, flush=True)
        if self._synced:
            os.kill(os.getpid(), signal.SIGTERM)  # JAX's notifier: every process stops together
        else:
            self._flag = True

    def reached(self, step: int) -> bool:
        """True at the step where this process must save and stop; call it at every step."""
        if self._synced:
            return multihost_utils.reached_preemption_sync_point(step)
        return self._flag

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def stopped_early(results: dict) -> int | None:
    """For a run that train_and_evaluate stopped before its end (a preemption notice, Ctrl-C):
    prints one line and returns its exit status (75, 130); None for a finished run."""
    for key, status, why in (("preempted_at_step", EXIT_PREEMPTED, "preempted"),
                             ("interrupted_at_step", EXIT_INTERRUPTED, "interrupted (Ctrl-C)")):
        if key in results:
            print(f"{why} at step {results[key]}: saved; rerun the same command to resume "
                  f"(exit status {status})", flush=True)
            return status
    return None


def available_memory() -> int | None:
    """Bytes a new computation may still allocate on this process's first device: MemAvailable
    (/proc/meminfo) on CPU, bytes_limit - bytes_in_use on accelerators; None where unknown."""
    device = jax.local_devices()[0]
    if device.platform == "cpu":
        return host.meminfo().get("MemAvailable")
    stats = device.memory_stats() or {}
    if "bytes_limit" not in stats:
        return None
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0)


def check_step_memory(compiled, what: str, config, available: int | None) -> None:
    """Raises OutOfMemoryError (a MemoryError), before the first step runs, when XLA's memory analysis of `compiled`
    says it needs more than `available` bytes beyond its (already allocated) arguments."""
    analysis = compiled.memory_analysis()
    if analysis is None or available is None:
        return
    need = (analysis.temp_size_in_bytes + analysis.output_size_in_bytes
            - analysis.alias_size_in_bytes)
    if need > available:
        gib = 2 ** 30
        raise OutOfMemoryError(
            f"{what} needs {need / gib:.1f} GiB per device beyond its inputs (XLA's memory "
            f"analysis: {analysis.temp_size_in_bytes / gib:.1f} GiB of temporaries), but only "
            f"{available / gib:.1f} GiB is available on {jax.local_devices()[0].platform}. "
            f"Lower config.batch_size ({config.batch_size}; config.grad_accum_steps splits it), "
            f"model.max_len ({config.model.max_len}), or set model.remat; a model family with "
            f"local attention (spade, local, s4) needs far less than full attention at this length")


def past_budget(max_wall_s: float, start: float) -> bool:
    """True once `max_wall_s` (> 0) seconds have passed since `start` (time.perf_counter()).
    Several processes follow process 0's clock (one broadcast per call), so they all stop at
    the same step."""
    if not max_wall_s:
        return False
    over = time.perf_counter() - start >= max_wall_s
    if multi_process():
        over = bool(multihost_utils.broadcast_one_to_all(np.asarray(over)))
    return over
