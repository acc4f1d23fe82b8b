"""The runtime: what every entry point stands on, below the model and the training engine:
errors and the CLI helpers, paths and the workdir lock, process start-up (jax.distributed,
preemption, memory checks), the allocator, host readings, TPU topologies for compiling, and
local_cluster. Light to import: the allocator must run before JAX is imported."""
