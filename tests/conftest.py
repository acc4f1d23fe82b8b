"""Test configuration shared by the whole suite.

Eight simulated CPU devices are requested before JAX is imported anywhere, so sharding code is
tested on a real multi-device mesh even on a one-CPU machine.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
