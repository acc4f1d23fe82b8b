"""Logical axis names: the one list of the names model code gives to array axes, and the two
constraints of a lookup that use them (`gathered`, `looked_up`).

Parameters and activations have separate names (as in MaxText), because they are sharded
differently: under FSDP a parameter's `EMBED` axis is split over the 'fsdp' mesh axis, while an
activation's `ACT_EMBED` axis stays whole (its batch axis already uses 'fsdp').
`spade_jax.train.sharding.DEFAULT_RULES` maps every name here to mesh axes; `config.logical_axis_rules`
overrides that mapping per experiment.
"""
import flax.linen as nn

# Parameter axes.
EMBED = "embed"  # d_model
MLP = "mlp"  # d_ff, and the concat-combine's 2 * d_model input
HEADS = "heads"  # attention heads
HEAD_DIM = "head_dim"  # d_model // num_heads
VOCAB = "vocab"  # token ids (embeddings, LM logits)
CLASSES = "classes"  # classifier outputs
RELPOS_BUCKETS = "relpos_buckets"  # T5 relative-position buckets
SSM_STATE = "ssm_state"  # S4's state size (d_state // 2 complex modes)
SSM_OUT = "ssm_out"  # S4's output channels (2 when bidirectional)

# Activation axes.
ACT_BATCH = "activation_batch"  # examples
ACT_LENGTH = "activation_length"  # positions in the sequence
ACT_EMBED = "activation_embed"  # d_model features
ACT_MLP = "activation_mlp"  # FFN hidden features
ACT_HEADS = "activation_heads"
ACT_HEAD_DIM = "activation_head_dim"

# The axes of a block's input and output (batch, length, d_model).
ACT_SEQUENCE = (ACT_BATCH, ACT_LENGTH, ACT_EMBED)

# Every logical name (config.logical_axis_rules may map only these).
NAMES = (EMBED, MLP, HEADS, HEAD_DIM, VOCAB, CLASSES, RELPOS_BUCKETS, SSM_STATE, SSM_OUT,
         ACT_BATCH, ACT_LENGTH, ACT_EMBED, ACT_MLP, ACT_HEADS, ACT_HEAD_DIM)


def gathered(x):
    """x constrained to be whole on every device (an embedding table or its projection at a
    lookup: with a table's 'embed' axis split over fsdp, XLA split the looked-up rows over their
    features and then rematerialised the whole activation to split it over the batch)."""
    return nn.with_logical_constraint(x, (None,) * x.ndim)


def looked_up(rows, ids):
    """Rows looked up for token ids: (B, L, d) for (B, L) ids is split like every activation
    (ACT_SEQUENCE); other shapes are returned as they are."""
    return nn.with_logical_constraint(rows, ACT_SEQUENCE) if ids.ndim == 2 else rows
