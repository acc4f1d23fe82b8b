"""The process around the training loop: start-up, joining the other hosts, memory checks,
preemption, exit statuses.

An entry point (lra.main, lm.main) calls `start_process()` first; the loop uses `Preemption`
and `check_step_memory`. A run stopped by a preemption notice (SIGTERM) after saving its
checkpoint exits with `EXIT_PREEMPTED` (75, EX_TEMPFAIL: "try again"), so that SLURM, Kubernetes
and launch/*.sh see "not finished, rerun to resume"; 0 means the run finished (results.json).
"""
import os
import signal
import time

import jax
import numpy as np
from absl import flags, logging
from jax.experimental import multihost_utils

from spade_jax import accelerators, allocator, host
from spade_jax.errors import ConfigError, UserError

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
    if accelerators.libtpu_version() is not None and not accelerators.tpu_attached():
        # libtpu (jax[tpu], for compiling for TPUs) looks for a TPU VM it is not on, aloud
        backend = accelerators.quietly(jax.default_backend)
    else:
        backend = jax.default_backend()
    if backend == "cpu" and allocator.active() is None and allocator.wanted():
        logging.warning("CPU run with the system's malloc: steps can take up to 1.7x longer "
                        "than with jemalloc (apt install libjemalloc2; the entry points then "
                        "preload it themselves; see spade_jax/allocator.py)")


def initialize_distributed() -> None:
    """jax.distributed.initialize() where a multi-process platform is detected: SLURM jobs with
    several tasks, GKE TPU pods (TPU_WORKER_HOSTNAMES), or an explicit coordinator
    (JAX_COORDINATOR_ADDRESS, with JAX_NUM_PROCESSES and JAX_PROCESS_ID: what
    `python -m spade_jax.local_cluster` sets). A single host needs nothing.

    A Cloud TPU VM pod slice (`gcloud compute tpus tpu-vm create`, e.g. v4-32 = 4 hosts) sets no
    such variable: JAX finds its workers in the VM's metadata server. Set SPADE_JAX_DISTRIBUTED=1
    there (launch/tpu_vm.sh does) to call jax.distributed.initialize() unconditionally;
    SPADE_JAX_DISTRIBUTED=0 never calls it."""
    env = os.environ
    forced = env.get("SPADE_JAX_DISTRIBUTED", "")
    if forced not in ("", "0", "1"):
        raise ConfigError(f"SPADE_JAX_DISTRIBUTED must be 0 or 1 (or unset), got {forced!r}")
    tpu_hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
    detected = (len(tpu_hosts) > 1 or int(env.get("SLURM_NTASKS", "1")) > 1
                or "JAX_COORDINATOR_ADDRESS" in env)
    if forced == "1" or (forced == "" and detected):
        # An explicit coordinator comes with its process count and index; elsewhere JAX's own
        # cluster detection fills them in.
        explicit = {name: int(env[var]) for name, var in (("num_processes", "JAX_NUM_PROCESSES"),
                                                          ("process_id", "JAX_PROCESS_ID"))
                    if env.get(var)}
        jax.distributed.initialize(**explicit)


def multi_process() -> bool:
    """True in a run of several JAX processes joined by jax.distributed.initialize()."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


class Preemption:
    """A preemption notice (SIGTERM) turned into one step at which every process saves and stops.

    Several processes: the notice may reach only some hosts (a maintenance event on one worker,
    a spot VM reclaimed), at different steps. JAX's preemption sync manager (started by
    jax.distributed.initialize, with its own SIGTERM handler) spreads it through the coordinator
    and picks the first step every process can still reach; `reached(step)` is True there, on
    every process (`multihost_utils.reached_preemption_sync_point`, called at every step).
    One process: a SIGTERM handler sets a flag that `reached` reports at the next step.
    Use as a context manager around the training loop (it restores the previous handler)."""

    def __init__(self):
        self._flag = False
        self._previous = None
        self._synced = multi_process()

    def __enter__(self):
        if not self._synced:  # JAX's notifier owns SIGTERM in multi-process runs: keep it
            try:
                self._previous = signal.signal(signal.SIGTERM, self._handle)
            except ValueError:  # not the main thread: no handler
                self._previous = None
        return self

    def _handle(self, signum, frame):
        self._flag = True

    def reached(self, step: int) -> bool:
        """True at the step where this process must save and stop; call it at every step."""
        if self._synced:
            return multihost_utils.reached_preemption_sync_point(step)
        return self._flag

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


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
