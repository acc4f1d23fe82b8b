"""When the mains call jax.distributed.initialize(): auto-detected platforms and the
SPADE_JAX_DISTRIBUTED switch that launch/tpu_vm.sh sets on Cloud TPU VM pod slices."""
import jax
import pytest

from spade_jax import runtime
from spade_jax.train import defaults

PLATFORM_VARS = ("SPADE_JAX_DISTRIBUTED", "TPU_WORKER_HOSTNAMES", "SLURM_NTASKS",
                 "JAX_COORDINATOR_ADDRESS")


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
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.2:1234"}, 1),
    ({"SPADE_JAX_DISTRIBUTED": "1"}, 1),                        # a Cloud TPU VM pod slice
    ({"SPADE_JAX_DISTRIBUTED": "0", "SLURM_NTASKS": "16"}, 0),  # switched off
])
def test_initialize_distributed_when_a_platform_asks(calls, monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runtime.initialize_distributed()
    assert len(calls) == expected
    if expected:
        assert calls[0] == ((), {})  # no arguments: JAX's own cluster detection fills them


def test_a_bad_switch_value_is_an_error(calls, monkeypatch):
    monkeypatch.setenv("SPADE_JAX_DISTRIBUTED", "yes")
    with pytest.raises(ValueError, match="SPADE_JAX_DISTRIBUTED must be 0 or 1"):
        runtime.initialize_distributed()
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
