"""The model: kernels (attention, ssm/), layers, the registry of mixers and families, the models
and their heads, decoding, FLOP counts, ModelConfig. It knows nothing of training; it imports
spade_jax.runtime (errors) only."""
