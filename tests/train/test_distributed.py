"""When the mains call jax.distributed.initialize(): auto-detected platforms and the
SPADE_JAX_DISTRIBUTED switch that launch/tpu_vm.sh sets on Cloud TPU VM pod slices."""
import jax
import pytest

from spade_jax.runtime import process
from spade_jax.train import defaults

PLATFORM_VARS = ("SPADE_JAX_DISTRIBUTED", "TPU_WORKER_HOSTNAMES", "SLURM_NTASKS",
                 "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
                 "SPADE_JAX_STARTUP_TIMEOUT")
COORDINATOR = {"JAX_COORDINATOR_ADDRESS": "10.0.0.2:1234", "JAX_NUM_PROCESSES": "4",
               "JAX_PROCESS_ID": "1"}


@pytest.fixture
def calls(monkeypatch):
    for name in PLATFORM_VARS:
        monkeypatch.delenv(name, raising=False)
    made = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: made.append((a, k)))
    return made


@pytest.mark.parametrize("env, expected", [
    ({}, 0),                                                    # one host
    ({"TPU_WORKER_HOSTNAMES": "t1k-w-0"}, 0),                  # a single-host GKE slice
    ({"TPU_WORKER_HOSTNAMES": "w-0,w-1,w-2,w-3"}, 1),          # a GKE pod slice
    ({"SLURM_NTASKS": "1"}, 0),
    ({"SLURM_NTASKS": "16"}, 1),                                # srun, 2 nodes x 8 GPUs
    (COORDINATOR, 1),                                           # local_cluster, by hand
    ({"SPADE_JAX_DISTRIBUTED": "1"}, 1),                        # a Cloud TPU VM pod slice
    ({"SPADE_JAX_DISTRIBUTED": "0", "SLURM_NTASKS": "16"}, 0),  # switched off
])
def test_initialize_distributed_when_a_platform_asks(calls, monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    process.initialize_distributed()
    assert len(calls) == expected
    if expected:
        args, kwargs = calls[0]
        assert args == () and kwargs.pop("initialization_timeout") > process.STARTUP_TIMEOUT_S
        if env is COORDINATOR:
            assert kwargs == {"coordinator_address": "10.0.0.2:1234", "num_processes": 4,
                              "process_id": 1}
        else:  # JAX's own cluster detection fills them in
            assert kwargs == {}


@pytest.mark.parametrize("env, message", [
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
     "JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=1 is set but JAX_COORDINATOR_ADDRESS is not"),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.2:1234"},
     "JAX_NUM_PROCESSES, JAX_PROCESS_ID is not"),
    ({**COORDINATOR, "JAX_PROCESS_ID": "4"}, r"JAX_PROCESS_ID \(4\) must be below JAX_NUM_PROC"),
    ({**COORDINATOR, "JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES must be a whole number"),
    ({**COORDINATOR, "JAX_COORDINATOR_ADDRESS": "10.0.0.2"}, "must be host:port"),
    ({**COORDINATOR, "SPADE_JAX_STARTUP_TIMEOUT": "-5"}, "SPADE_JAX_STARTUP_TIMEOUT must be"),
])
def test_an_incomplete_or_bad_cluster_is_refused_before_anything_starts(calls, monkeypatch, env,
                                                                         message):
    """On a pod, a host with some of the variables would otherwise train alone, as process 0,
    into the shared workdir."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        process.initialize_distributed()
    assert calls == []


def test_a_coordinator_that_never_answers_is_named_within_the_startup_timeout(tmp_path):
    """Process 1 of 2 with nobody serving the coordinator: one line naming the address and the
    process, exit status 2, after SPADE_JAX_STARTUP_TIMEOUT seconds (JAX alone aborts after 5
    minutes with a C++ stack trace)."""
    import os
    import socket
    import subprocess
    import sys
    from spade_jax.runtime import local_cluster
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = dict(local_cluster.cpu_env(1), JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
               JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="1", SPADE_JAX_STARTUP_TIMEOUT="2")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", "from spade_jax.runtime import process; "
                           "process.initialize_distributed(); print('joined')"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "joined" not in done.stdout and "Check failure" not in done.stderr
    assert (f"error: the processes did not join within 2 s (SPADE_JAX_STARTUP_TIMEOUT): process "
            f"1 of 2 could not join the coordinator at 127.0.0.1:{port}") in done.stderr


def test_a_bad_switch_value_is_an_error(calls, monkeypatch):
    monkeypatch.setenv("SPADE_JAX_DISTRIBUTED", "yes")
    with pytest.raises(ValueError, match="SPADE_JAX_DISTRIBUTED must be 0 or 1"):
        process.initialize_distributed()
    assert calls == []


def _config(batch_size, accum=1):
    from spade_jax.train.defaults import default_config
    config = default_config()
    config.batch_size, config.grad_accum_steps = batch_size, accum
    return config


@pytest.mark.parametrize("processes, batch_size, accum, ok", [
    (1, 16, 1, True),
    (4, 16, 1, True),    # 8 devices on 4 hosts: 4 rows per host, 2 per device
    (4, 32, 2, True),
    (4, 12, 1, False),   # not a multiple of the 8 data-parallel devices
    (4, 16, 4, False),   # micro-batches of 4 rows over 8 devices
    (16, 8, 1, False),   # fewer rows than processes
])
def test_the_global_batch_is_checked_against_devices_and_hosts(processes, batch_size, accum, ok):
    """A v4-32 (16 devices, 4 hosts) Path-X run has batch 32: it must not need 16 x 4 = 64.
    8 devices: the default mesh has data = 8."""
    if ok:
        defaults.validate(_config(batch_size, accum), 8, processes)
    else:
        with pytest.raises(ValueError, match="config.batch_size"):
            defaults.validate(_config(batch_size, accum), 8, processes)
