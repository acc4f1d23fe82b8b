"""Model hyperparameters: a frozen dataclass, built from an ml_collections ConfigDict.

`ModelConfig.from_config(config.model)` checks every field (unknown names, types, ranges) and
names the offending field in its error, before any array is allocated. `default_model_config()`
gives the ConfigDict with every field at its default, which experiment configs start from.
"""
import dataclasses
import typing
from typing import Optional

import ml_collections

from spade_jax.runtime.errors import ConfigError, closest

HEADS = ("classify", "retrieval", "lm")
ATTENTION_IMPLS = ("blocked", "auto", "flash", "splash", "cudnn")  # see spade_jax.model.attention_accel
MAX_LEN = 2**21  # the longest sequence (model.max_len, the data's length) accepted: 128 x Path-X


@dataclasses.dataclass(frozen=True)
class S4Config:
    """The S4 layer inside `spade` global blocks and `s4` blocks (see spade_jax.model.ssm.S4Layer)."""

    d_state: int = 64
    kernel: str = "dplr"  # 'dplr' (S4) | 'diag' (S4D)
    mode: str = "fft"  # 'fft' | 'scan' | 'chunked' (the last two diag only)
    chunk_steps: int = 128  # mode='chunked': steps per chunk (S4Layer.chunk_size)
    discretization: Optional[str] = None  # None: bilinear for dplr, zoh for diag
    dt_min: float = 0.001
    dt_max: float = 0.1
    bidirectional: Optional[bool] = None  # None: the opposite of ModelConfig.causal
    init: str = "legs"  # initial (Lambda, B): 'legs' (HiPPO-LegS) | 'lin' | 'inv' (S4D; diag only)
    b_clip: Optional[float] = 2.0  # Im(B~) clipped to [-b_clip, b_clip] at init, as S4; None: off


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Every hyperparameter of a model family and its head.

    family: 'spade' (global S4 + local-attention blocks at `global_layers`, local attention
      elsewhere), 'transformer' (full attention), 'local' (local attention only), 's4' (S4 only):
      the families registered in spade_jax.model.families (not their variants, e.g. spade_chunk).
    local_attention: an attention kind of the registry: 'window' (each token sees +-radius) or
      'chunk' (non-overlapping chunks of chunk_size), for the spade and local families.
    combine: how a global block merges its S4 and attention branches: 'concat' (Linear(2d -> d)),
      'add' ((g + l) / 2) or 'stack' (local attention applied to the S4 output, without the
      inner LayerNorms, as the reference's stacked layer).
    position: 'relative' (T5 bucketed bias, computed once and shared by all layers; used by window
      and full attention), 'learned' (absolute embeddings up to max_len) or 'none'.
    input_encoder: 'embed' (a learned row per token id) or 'linear' (ids read as intensities in
      [-1, 1] through Linear(1 -> d), as S4 encodes pixels; for the image tasks).
    head: 'classify' (pooled sequence -> num_classes), 'retrieval' (shared encoder on two
      inputs; [e1, e2, e1*e2, e1-e2] -> MLP -> num_classes), 'lm' (logits over the vocabulary).
    adaptive_cutoffs: head 'lm' only: ids (by frequency) where the vocabulary is cut into bands
      for adaptive input and adaptive softmax (fairseq; e.g. (20000, 60000)); band i has
      d_model // adaptive_factor**i dimensions. () = a plain embedding and softmax. With
      tie_embeddings the input and output share the band embeddings and projections.
    adaptive_dropout: dropout inside the adaptive softmax's tail clusters (fairseq 0.2).
    remat: rematerialisation of each block: 'none', 'all' (save nothing: recompute all of it in the
      backward pass) or 'dots' (save the matmuls' outputs).
    attention_impl: the kernel behind window, chunk and full attention
      (spade_jax.model.attention_accel): 'blocked' (the portable jnp kernels of
      spade_jax.model.attention; any backend), 'auto' (the default: on a TPU 'flash' for the
      layers that take the window relative-position bias, 'splash' for those that take none,
      'blocked' for a dense bias; 'blocked' elsewhere. By XLA's TPU compile report flash moves
      half the bytes of the blocked Path-X step, splash 0.55-0.66x; docs/benchmarks.md,
      docs/tpu.md), 'flash' (TPU Pallas kernels of spade_jax.model.attention_flash that take
      the T5 bias of window attention; bidirectional or causal), 'splash' (TPU Pallas splash
      attention; no bias) or 'cudnn' (GPU cuDNN fused attention; causal only, dtype bfloat16,
      head_dim a multiple of 8 up to 256; no bias). With splash or cudnn, position must be
      'none' or 'learned' wherever an attention layer would take the bias; with flash wherever
      a full-attention layer would. Decoding and family 's4' ignore it.
    """

    family: str = "spade"
    vocab_size: int = 256
    pad_id: int = 0
    input_encoder: str = "embed"
    num_layers: int = 4
    d_model: int = 128
    num_heads: int = 4
    d_ff: int = 512
    activation: str = "gelu"  # 'gelu' | 'relu'
    norm: str = "pre"  # 'pre' | 'post'
    final_norm: bool = True
    dropout: float = 0.1
    ffn_dropout: float = 0.0
    causal: bool = False
    max_len: int = 1024
    local_attention: str = "window"
    radius: int = 127
    chunk_size: int = 128
    global_layers: tuple = (0,)
    combine: str = "concat"
    position: str = "relative"
    relpos_buckets: int = 32
    relpos_max_distance: int = 128
    s4: S4Config = S4Config()
    head: str = "classify"
    num_classes: int = 2
    pooling: str = "mean"  # 'mean' over real tokens | 'cls' (a learned token prepended)
    tie_embeddings: bool = True
    adaptive_cutoffs: tuple = ()
    adaptive_factor: int = 4
    adaptive_dropout: float = 0.0
    dtype: str = "float32"  # compute dtype; parameters are always float32
    remat: str = "none"
    attention_impl: str = "auto"

    def __post_init__(self):
        # model.family and model.local_attention are the registry's to check
        # (spade_jax.model.families.check), as is what depends on a family
        choices = dict(activation=("gelu", "relu"), norm=("pre", "post"),
                       combine=("concat", "add", "stack"),
                       position=("relative", "learned", "none"), head=HEADS,
                       pooling=("mean", "cls"), dtype=("float32", "bfloat16"),
                       remat=("none", "all", "dots"), input_encoder=("embed", "linear"),
                       attention_impl=ATTENTION_IMPLS)
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"model.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("vocab_size", "num_layers", "d_model", "num_heads", "d_ff", "max_len",
                     "chunk_size", "num_classes", "relpos_buckets", "relpos_max_distance"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_len > MAX_LEN:
            raise ConfigError(f"model.max_len is {self.max_len:,}, above the {MAX_LEN:,} tokens "
                              f"this code supports (Path-X is 16,384): check the value (a "
                              f"mistyped exponent?)")
        if self.d_model % self.num_heads:
            raise ConfigError(f"model.d_model ({self.d_model}) must be divisible by model.num_heads "
                             f"({self.num_heads})")
        if not isinstance(self.radius, int) or self.radius < 0:
            raise ConfigError(f"model.radius must be an integer >= 0, got {self.radius!r}")
        for name in ("dropout", "ffn_dropout", "adaptive_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ConfigError(f"model.pad_id ({self.pad_id}) must be a token id below vocab_size "
                             f"({self.vocab_size})")
        if self.s4.d_state < 2 or self.s4.d_state % 2:
            raise ConfigError(f"model.s4.d_state must be even and >= 2, got {self.s4.d_state}")
        self._check_s4()
        if self.head == "lm" and not self.causal:
            raise ConfigError("model.head='lm' needs model.causal=True")
        if self.input_encoder == "linear" and self.vocab_size < 2:
            raise ConfigError("model.input_encoder='linear' reads ids 0..vocab_size-1 as "
                             f"intensities: model.vocab_size must be >= 2, got {self.vocab_size}")
        if self.head == "lm" and self.input_encoder != "embed":
            raise ConfigError("model.head='lm' reads word ids through its (adaptive) embedding: "
                             "model.input_encoder must be 'embed'")
        if self.head == "lm" and self.s4_bidirectional:
            raise ConfigError("model.head='lm' is causal: model.s4.bidirectional must be False")
        if self.adaptive_cutoffs:
            self._check_adaptive()
        if self.pooling == "cls" and self.causal:
            raise ConfigError("model.pooling='cls' reads position 0, which a causal model cannot "
                             "fill with the sequence; use pooling='mean'")
        self._check_attention_impl()

    def _check_s4(self):
        s4 = self.s4
        for name, allowed in (("kernel", ("dplr", "diag")), ("mode", ("fft", "scan", "chunked")),
                              ("discretization", (None, "zoh", "bilinear")),
                              ("init", ("legs", "lin", "inv"))):
            if getattr(s4, name) not in allowed:
                raise ConfigError(f"model.s4.{name} must be one of {allowed}, got "
                                  f"{getattr(s4, name)!r}")
        if s4.kernel == "dplr" and (s4.mode != "fft" or s4.discretization == "zoh"):
            raise ConfigError("model.s4.kernel='dplr' takes model.s4.mode 'fft' and the bilinear "
                              "discretisation only; model.s4.kernel='diag' takes 'scan', "
                              "'chunked' and 'zoh'")
        if s4.chunk_steps < 1:
            raise ConfigError(f"model.s4.chunk_steps must be >= 1 (steps per chunk of "
                              f"mode='chunked'), got {s4.chunk_steps!r}")
        if s4.init != "legs" and s4.kernel != "diag":
            raise ConfigError(f"model.s4.init={s4.init!r} (S4D-{s4.init.capitalize()}) is a "
                              "diagonal initialisation: set model.s4.kernel='diag', or "
                              "model.s4.init='legs' for the DPLR kernel")
        if s4.b_clip is not None and not s4.b_clip > 0:
            raise ConfigError(f"model.s4.b_clip must be > 0 or None, got {s4.b_clip!r}")
        if not 0 < s4.dt_min <= s4.dt_max:
            raise ConfigError(f"model.s4 needs 0 < dt_min <= dt_max, got dt_min={s4.dt_min}, "
                              f"dt_max={s4.dt_max}")

    def _check_attention_impl(self):
        """What the accelerator kernels need of the config itself (against the layers' bias:
        spade_jax.model.families.check)."""
        if self.attention_impl != "cudnn":
            return
        if not self.causal:
            raise ConfigError("model.attention_impl='cudnn' needs model.causal=True: cuDNN's "
                             "sliding window is left-only; use 'splash' (TPU) or 'blocked' for "
                             "bidirectional attention")
        if self.dtype != "bfloat16":
            raise ConfigError("model.attention_impl='cudnn' needs model.dtype='bfloat16' (cuDNN "
                             f"fused attention takes bfloat16 / float16), got {self.dtype!r}")
        if self.head_dim % 8 or self.head_dim > 256:
            raise ConfigError(f"model.attention_impl='cudnn' needs a head_dim (d_model / "
                             f"num_heads) that is a multiple of 8 and at most 256 (128 before "
                             f"Hopper), got {self.head_dim}")

    def _check_adaptive(self):
        cuts = self.adaptive_cutoffs
        if self.head != "lm":
            raise ConfigError(f"model.adaptive_cutoffs are for head='lm', got head={self.head!r}")
        if (not all(isinstance(c, int) for c in cuts) or list(cuts) != sorted(set(cuts))
                or cuts[0] < 1 or cuts[-1] >= self.vocab_size):
            raise ConfigError(f"model.adaptive_cutoffs must be increasing token ids in [1, "
                             f"vocab_size={self.vocab_size}), got {cuts}; use () for a plain "
                             f"softmax (small vocabularies)")
        if not isinstance(self.adaptive_factor, int) or self.adaptive_factor < 1:
            raise ConfigError(f"model.adaptive_factor must be an integer >= 1, got "
                             f"{self.adaptive_factor!r}")
        if self.d_model // self.adaptive_factor ** len(cuts) < 1:
            raise ConfigError(f"model.adaptive_factor {self.adaptive_factor} leaves the last of "
                             f"{len(cuts) + 1} bands no dimension at d_model={self.d_model}")

    @property
    def s4_bidirectional(self) -> bool:
        return (not self.causal) if self.s4.bidirectional is None else self.s4.bidirectional

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @classmethod
    def from_config(cls, config) -> "ModelConfig":
        """Builds from a ConfigDict (or dict) with ModelConfig's field names; `s4` nested."""
        values = dict(config.to_dict() if hasattr(config, "to_dict") else config)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown model config field(s) {unknown}"
                             f"{closest(unknown[0], known, 'the fields of config.model')}")
        s4 = dict(values.pop("s4", {}) or {})
        s4_known = {f.name for f in dataclasses.fields(S4Config)}
        if set(s4) - s4_known:
            raise ConfigError(f"unknown model.s4 field(s) {sorted(set(s4) - s4_known)}"
                             f"{closest(sorted(set(s4) - s4_known)[0], s4_known)}")
        for name in ("global_layers", "adaptive_cutoffs"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(s4=S4Config(**s4), **values)


def default_model_config() -> ml_collections.ConfigDict:
    """A ConfigDict holding every ModelConfig field at its default (s4 nested). A field whose
    default is None holds a typed placeholder, so that `--config.model.s4.bidirectional=True`
    can set it (ml_collections cannot override a field of type NoneType)."""
    config = ml_collections.ConfigDict(dataclasses.asdict(ModelConfig()))
    for owner, cls in ((config, ModelConfig), (config.s4, S4Config)):
        for field in dataclasses.fields(cls):
            if getattr(owner, field.name, 0) is None:
                kind = typing.get_args(typing.get_type_hints(cls)[field.name])[0]
                owner[field.name] = ml_collections.config_dict.placeholder(kind)
    return config
