"""Analytic FLOP formulas of a model's parts, for MFU (training = 3 x forward); the total of a
model is spade_jax.model.families.forward_flops (each layer's mixer formula from the registry).

Counted: every matmul (2 FLOPs per multiply-add), attention by the keys actually computed (the
blocked local attention computes 3 blocks of radius + 1 keys per query, 2 when causal; chunk
attention `chunk_size`; full attention L), the S4 FFT convolution (real FFTs of size 2L at
2.5 n log2 n FLOPs, forward for the input, inverse for the output, one for the kernel) and the S4
kernel generation (once per step: it depends only on the parameters). Ignored: norms,
activations, softmax, embedding lookups (each O(L·d), far below the matmuls).
"""
import math

from spade_jax.model.adaptive import bands
from spade_jax.model.config import ModelConfig
from spade_jax.model.ssm import kernels


def _rfft(n: int) -> float:
    return 2.5 * n * math.log2(max(n, 2))


def s4_conv_flops(cfg: ModelConfig, length: int) -> float:
    """Per sequence: input FFT, pointwise product, inverse FFT (size 2L, d_model channels)."""
    n = 2 * length
    return cfg.d_model * (2 * _rfft(n) + 6 * (n // 2 + 1))


def s4_kernel_flops(cfg: ModelConfig, length: int) -> float:
    """Per step (batch-independent): the Cauchy (dplr) or Vandermonde (diag) kernel + its FFT."""
    h, n2 = cfg.d_model, cfg.s4.d_state // 2
    channels = 2 if cfg.s4_bidirectional else 1
    if cfg.s4.kernel == "dplr":
        freqs = length // 2 + 1
        k = 2 * channels + 2  # Cauchy numerators
        per_point = 20 + 2 * 2 * (2 * k)  # reciprocal of the pair denominator + real matmuls
        return h * n2 * freqs * per_point + h * channels * (_rfft(length) + _rfft(2 * length))
    # Vandermonde as in kernels.diag_kernel: complex powers at T + L/T positions (T ~ sqrt(L)),
    # the weights times the block powers, then two real (Cc L/T, N2) x (N2, T) products per channel
    steps, blocks = kernels.vandermonde_blocks(length)
    return (h * n2 * (20 * (steps + blocks) + 6 * channels * blocks)
            + 2 * 2 * channels * h * n2 * blocks * steps + h * channels * _rfft(2 * length))


def attention_flops(cfg: ModelConfig, kind, length: int) -> float:
    """Per sequence: the q, k, v, o projections and the scores and weighted values of an
    attention kind (spade_jax.model.attention.AttentionKind: its `keys` per query)."""
    d = cfg.d_model
    return 4 * 2 * length * d * d + 2 * 2 * length * kind.keys(cfg, length) * d


def global_mixer_flops(cfg: ModelConfig, local, length: int) -> tuple:
    """SPADE's global mixer with the local attention kind `local`: (per sequence: local
    attention + S4 convolution [+ the concat projection], per step: the S4 kernel)."""
    per_seq = attention_flops(cfg, local, length) + s4_conv_flops(cfg, length)
    if cfg.combine == "concat":
        per_seq += 2 * length * 2 * cfg.d_model * cfg.d_model
    return per_seq, s4_kernel_flops(cfg, length)


def s4_mixer_flops(cfg: ModelConfig, length: int) -> tuple:
    """The S4-only mixer: (per sequence: S4 convolution + output projection, per step: the S4
    kernel)."""
    return (s4_conv_flops(cfg, length) + 2 * length * cfg.d_model * cfg.d_model,
            s4_kernel_flops(cfg, length))


def ffn_flops(cfg: ModelConfig, length: int) -> float:
    """Per sequence: one block's feed-forward network (two matmuls)."""
    return 2 * 2 * length * cfg.d_model * cfg.d_ff


def head_flops(cfg: ModelConfig, length: int) -> float:
    """Per sequence: the head (the LM's logits, adaptive or plain; the retrieval pair's MLP,
    half per sequence; the classifier)."""
    d = cfg.d_model
    if cfg.head == "lm" and cfg.adaptive_cutoffs:
        return length * adaptive_flops_per_token(cfg)
    if cfg.head == "lm":
        return 2 * length * d * cfg.vocab_size
    if cfg.head == "retrieval":
        return (2 * 4 * d * d + 2 * d * cfg.num_classes) / 2
    return 2 * d * cfg.num_classes


def adaptive_flops_per_token(cfg: ModelConfig) -> float:
    """Adaptive input (each band's projection, as computed: every band at every token) and
    adaptive softmax (head words + clusters, and every tail at every token: projection + logits)."""
    parts = bands(cfg.vocab_size, cfg.adaptive_cutoffs, cfg.d_model, cfg.adaptive_factor)
    d = cfg.d_model
    inputs = sum(2 * dim * d for _, _, dim in parts)
    head = 2 * d * (parts[0][1] + len(parts) - 1)
    tails = sum(2 * (d * dim + dim * size) for _, size, dim in parts[1:])
    return inputs + head + tails
