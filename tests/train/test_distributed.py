"""When the mains call jax.distributed.initialize(): auto-detected platforms and the
SPADE_JAX_DISTRIBUTED switch that launch/tpu_vm.sh sets on Cloud TPU VM pod slices."""
import jax
import pytest

from spade_jax.train import loop

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
    loop.initialize_distributed()
    assert len(calls) == expected
    if expected:
        assert calls[0] == ((), {})  # no arguments: JAX's own cluster detection fills them


def test_a_bad_switch_value_is_an_error(calls, monkeypatch):
    monkeypatch.setenv("SPADE_JAX_DISTRIBUTED", "yes")
    with pytest.raises(ValueError, match="SPADE_JAX_DISTRIBUTED must be 0 or 1"):
        loop.initialize_distributed()
    assert calls == []
