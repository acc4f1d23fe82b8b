"""State-space layers: HiPPO initialisation, S4/S4D kernels, and the S4Layer module."""
from spade_jax.model.ssm.layer import SSM_PARAM_NAMES, S4Layer

__all__ = ["S4Layer", "SSM_PARAM_NAMES"]
