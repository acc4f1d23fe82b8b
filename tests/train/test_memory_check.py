"""The engine's pre-flight memory check: a step XLA plans to need more than the device has left
stops before it runs, with the sizes and the fields to change."""
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import pytest

from spade_jax.runtime import process

CONFIG = SimpleNamespace(batch_size=8, model=SimpleNamespace(max_len=16384))


def _outer_product_sum():
    """A compiled function with (2048, 2048) float32 temporaries (16 MiB each) for a matmul."""
    def f(x):
        a = jnp.tanh(x[:, None] * x[None, :])
        return jnp.sort(a, axis=0) @ a.T
    return jax.jit(f).lower(jnp.ones(2048)).compile()


def test_a_step_larger_than_the_memory_left_is_refused_naming_the_fields():
    compiled = _outer_product_sum()
    need = compiled.memory_analysis().temp_size_in_bytes
    assert need >= 2048 * 2048 * 4  # the planned temporaries are really there
    with pytest.raises(MemoryError, match=r"the train step needs .* GiB per device .* only "
                                          r"0\.0 GiB is available .*batch_size \(8.*max_len "
                                          r"\(16384\)"):
        process.check_step_memory(compiled, "the train step", CONFIG, available=need // 2)


def test_a_step_that_fits_or_an_unknown_limit_passes():
    compiled = _outer_product_sum()
    process.check_step_memory(compiled, "the train step", CONFIG, available=2 ** 40)
    process.check_step_memory(compiled, "the train step", CONFIG, available=None)


def test_available_memory_on_cpu_is_positive_and_below_the_machine_total():
    available = process.available_memory()
    with open("/proc/meminfo") as f:
        total = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) * 1024
    assert 0 < available <= total
