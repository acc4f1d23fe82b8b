"""The shared training engine: optimiser, state, steps, checkpoints, metrics and the loop."""
