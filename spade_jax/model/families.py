"""The registry of token mixers and model families: the one place that says what each is, and
what a ModelConfig's layers are (it sits above the layers and formulas it names, and below the
models that read it).

A mixer kind ('global', 'window', 'chunk', 'full', 's4') is a `Mixer`: the Flax module a Block
runs (spade_jax.model.layers), its forward FLOPs (spade_jax.model.flops), whether it decodes one
token at a time against a cache, and which form of the shared relative-position bias it takes.
An attention kind ('window', 'chunk', 'full') carries its `attention`
(spade_jax.model.attention.AttentionKind): which keys each query sees, its portable kernel, the
keys it scores, its decoding cache; the modules, the accelerator kernels and the FLOP counts
read everything from it. A new attention kind is one `register(attention_mixer(...))` here plus
its kernel.

A model family ('spade', 'spade_chunk', 'transformer', 'local', 's4') is a `Family`: the mixer
kind of each layer, given a ModelConfig, the ModelConfig fields that `:model=<name>` sets, and
the checks of ModelConfig that only make sense for it. A family with `variant_of` is a preset of
another one (spade_chunk: spade with chunk attention): it shares that family's layers and
`model.family` value, and sets more fields.

Everything that lists families or mixers reads them from here: `check` (model.family,
model.local_attention, the attention kernel against the bias), `layer_kinds`,
`relative_bias_kinds`, `forward_flops`, spade_jax.model.models (each block's mixer),
spade_jax.demo and the experiment configs (`lra.configs`: every family; `lm.configs`: the
`lm_families()`, whose mixers all decode).
"""
import dataclasses
from typing import Callable, Mapping, Optional

from spade_jax.model import attention, flops, layers
from spade_jax.model.attention import AttentionKind
from spade_jax.model.config import ModelConfig
from spade_jax.runtime.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Mixer:
    """A token mixer kind.

    build(cfg, name) -> a Flax module whose __call__(u (B, L, d), mask (B, L) bool or None,
      bias, decode) returns (B, L, d); Block creates it under the name 'mixer'.
    flops(cfg, length) -> (per_sequence, per_step_fixed) forward FLOPs of one layer of this
      mixer on one sequence (the second part, e.g. an S4 kernel, is paid once per step).
    decodes: it runs causally and one token at a time against the 'cache' collection.
    relative_bias(cfg) -> the form of the shared relative-position bias it takes when
      model.position='relative' ('dense', 'window'; see AttentionKind.bias), or None.
    attention: for an attention kind, its AttentionKind (else None).
    attends(cfg) -> the AttentionKind the mixer runs (an attention kind: itself; the global
      mixer: the config's local attention), or None.
    """

    name: str
    build: Callable[[ModelConfig, str], object]
    flops: Callable[[ModelConfig, int], tuple]
    decodes: bool = False
    relative_bias: Callable[[ModelConfig], Optional[str]] = lambda cfg: None
    attention: Optional[AttentionKind] = None
    attends: Callable[[ModelConfig], Optional[AttentionKind]] = lambda cfg: None


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family (`:model=<name>` in the experiment configs).

    layer_kinds(cfg) -> the mixer kind (a MIXERS name) of each of cfg.num_layers layers.
    fields: the ModelConfig fields `:model=<name>` sets besides model.family.
    variant_of: another family whose layers and model.family value this one shares (then
      layer_kinds is that family's); None for a family of its own (model.family = name).
    check(cfg) -> None: raises a ConfigError for a ModelConfig this family cannot build (e.g.
      spade's global_layers outside the layers).
    """

    name: str
    layer_kinds: Optional[Callable[[ModelConfig], tuple]] = None
    fields: Mapping = dataclasses.field(default_factory=dict)
    variant_of: Optional[str] = None
    check: Callable[[ModelConfig], None] = lambda cfg: None


MIXERS: dict = {}
FAMILIES: dict = {}


def register(entry):
    """Adds a Mixer or a Family to the registry (its name must be new); returns it."""
    table = MIXERS if isinstance(entry, Mixer) else FAMILIES
    if entry.name in table:
        raise ValueError(f"{type(entry).__name__} {entry.name!r} is already registered")
    if isinstance(entry, Family) and (entry.variant_of is None) == (entry.layer_kinds is None):
        raise ValueError(f"family {entry.name!r}: give exactly one of layer_kinds, variant_of")
    if isinstance(entry, Family) and entry.variant_of is not None:
        family(entry.variant_of)  # must exist
    table[entry.name] = entry
    return entry


def family(name: str) -> Family:
    """The registered family `name`; a ConfigError listing the families otherwise."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown model family {name!r}; expected one of {list(FAMILIES)}")
    return FAMILIES[name]


def mixer(kind: str) -> Mixer:
    if kind not in MIXERS:
        raise ValueError(f"unknown mixer kind {kind!r}; registered: {list(MIXERS)}")
    return MIXERS[kind]


def attention_kinds() -> tuple:
    """The registered attention kinds (the values model.local_attention may take)."""
    return tuple(name for name, m in MIXERS.items() if m.attention is not None)


def model_families() -> tuple:
    """The allowed values of model.family: the families that are not a variant of another."""
    return tuple(name for name, f in FAMILIES.items() if f.variant_of is None)


def model_fields(name: str) -> dict:
    """The ModelConfig fields `:model=<name>` sets: {'family': ..., **fields}."""
    entry = family(name)
    return {"family": entry.variant_of or name, **entry.fields}


def layer_kinds(cfg: ModelConfig) -> tuple:
    """The mixer kind of each layer of `cfg` ('global' (S4 beside local attention), 'window',
    'chunk', 'full', 's4', ...): its model.family's layer_kinds."""
    return family(cfg.family).layer_kinds(cfg)


def relative_bias_kinds(cfg: ModelConfig) -> dict:
    """{layer kind: the form of the shared relative-position bias it takes} for the kinds of
    `cfg` that take one ('dense' for full attention, 'window' for window attention and the
    global mixer when its local attention is the window; chunk attention and S4 take none);
    empty unless position='relative'."""
    if cfg.position != "relative":
        return {}
    forms = {kind: mixer(kind).relative_bias(cfg) for kind in layer_kinds(cfg)}
    return {kind: form for kind, form in forms.items() if form is not None}


def grows(cfg: ModelConfig) -> bool:
    """Whether a layer of `cfg` decodes against a cache of every previous token (full
    attention; see AttentionKind.decode_slots), so that max_len bounds the generated text."""
    kinds = [mixer(kind).attends(cfg) for kind in layer_kinds(cfg)]
    return any(kind is not None and kind.decode_slots(cfg) == "grow" for kind in kinds)


def local_attention(cfg: ModelConfig) -> AttentionKind:
    """The attention kind of model.local_attention (SPADE's global mixer, the local family)."""
    if cfg.local_attention not in attention_kinds():
        raise ConfigError(f"model.local_attention must be one of {attention_kinds()}, got "
                          f"{cfg.local_attention!r}")
    return mixer(cfg.local_attention).attention


def check(cfg: ModelConfig) -> ModelConfig:
    """The checks of `cfg` that depend on the registry: model.family, model.local_attention,
    the family's own checks, and an accelerator attention kernel against the layers that take
    the relative-position bias. Raises ConfigError naming the field; returns cfg."""
    if cfg.family not in model_families():
        raise ConfigError(f"model.family must be one of {model_families()}, got {cfg.family!r}")
    local_attention(cfg)
    family(cfg.family).check(cfg)
    if cfg.attention_impl in ("splash", "cudnn") and relative_bias_kinds(cfg):
        raise ConfigError(
            f"model.attention_impl={cfg.attention_impl!r} cannot add the relative-position bias "
            f"that model.position='relative' gives the {sorted(relative_bias_kinds(cfg))} "
            "attention layers: the kernel takes no additive score bias (only as a dense (L, L) "
            "array, which it exists to avoid). Set model.position to 'none' or 'learned', or "
            "model.attention_impl to 'blocked', 'flash' or 'auto'")
    dense = sorted(kind for kind, form in relative_bias_kinds(cfg).items() if form == "dense")
    if cfg.attention_impl == "flash" and dense:
        raise ConfigError(
            f"model.attention_impl='flash' takes the relative-position bias of window attention "
            f"only, not the dense (L, L) bias of the {dense} attention layers that "
            "model.position='relative' gives. Set model.position to 'none' or 'learned', or "
            "model.attention_impl to 'blocked' or 'auto'")
    return cfg


def forward_flops(cfg: ModelConfig, length: int) -> dict:
    """Forward FLOPs of one sequence of `length` tokens through the encoder and the head:
    {'per_sequence': ..., 'per_step_fixed': ...} (the second part, S4 kernels, is paid once per
    step whatever the batch size). Each layer is its FFN plus its mixer's formula."""
    per_seq, fixed = flops.head_flops(cfg, length), 0.0
    for kind in layer_kinds(cfg):
        mixer_seq, mixer_fixed = mixer(kind).flops(cfg, length)
        per_seq += flops.ffn_flops(cfg, length) + mixer_seq
        fixed += mixer_fixed
    return {"per_sequence": per_seq, "per_step_fixed": fixed}


def train_step_flops(cfg: ModelConfig, length: int, sequences: int) -> float:
    """Model FLOPs of one training step: 3 x forward (forward + backward)."""
    f = forward_flops(cfg, length)
    return 3.0 * (f["per_sequence"] * sequences + f["per_step_fixed"])


def lm_families() -> tuple:
    """The families that can be a causal language model: every mixer they use (at their
    default configuration) decodes."""
    def decodes(name):
        cfg = ModelConfig(**model_fields(name), causal=True)
        return all(mixer(kind).decodes for kind in layer_kinds(cfg))
    return tuple(name for name in FAMILIES if decodes(name))


def attention_mixer(kind: AttentionKind) -> Mixer:
    """The Mixer of an attention kind: self-attention with its kernel, FLOPs and bias form."""
    return Mixer(kind.name, lambda cfg, name: layers.SelfAttention(cfg, kind, name=name),
                 lambda cfg, length: (flops.attention_flops(cfg, kind, length), 0.0),
                 decodes=True, relative_bias=kind.bias, attention=kind, attends=lambda cfg: kind)


register(attention_mixer(AttentionKind(
    "window", window=lambda cfg: (cfg.radius, 0 if cfg.causal else cfg.radius),
    chunk=lambda cfg: None,
    blocked=lambda q, k, v, cfg, mask, bias: attention.local_attention(
        q, k, v, radius=cfg.radius, causal=cfg.causal, mask=mask, bias=bias),
    keys=lambda cfg, length: (2 if cfg.causal else 3) * (cfg.radius + 1),  # blocks of radius+1
    cache=lambda cfg: cfg.radius + 1, bias=lambda cfg: "window")))
register(attention_mixer(AttentionKind(
    "chunk", window=lambda cfg: (None, 0 if cfg.causal else None),
    chunk=lambda cfg: cfg.chunk_size,
    blocked=lambda q, k, v, cfg, mask, bias: attention.chunk_attention(
        q, k, v, chunk=cfg.chunk_size, causal=cfg.causal, mask=mask),
    keys=lambda cfg, length: min(cfg.chunk_size, length),
    cache=lambda cfg: cfg.chunk_size, bias=lambda cfg: None)))
register(attention_mixer(AttentionKind(
    "full", window=lambda cfg: (None, 0 if cfg.causal else None),
    chunk=lambda cfg: None,
    blocked=lambda q, k, v, cfg, mask, bias: attention.full_attention(
        q, k, v, causal=cfg.causal, mask=mask, bias=bias),
    keys=lambda cfg, length: length,
    cache=lambda cfg: cfg.max_len, bias=lambda cfg: "dense")))
register(Mixer("global", lambda cfg, name: layers.GlobalMixer(cfg, local_attention(cfg),
                                                             name=name),
               lambda cfg, length: flops.global_mixer_flops(cfg, local_attention(cfg), length),
               decodes=True, relative_bias=lambda cfg: local_attention(cfg).bias(cfg),
               attends=local_attention))
register(Mixer("s4", lambda cfg, name: layers.S4Mixer(cfg, name=name), flops.s4_mixer_flops,
               decodes=True))


def _check_spade(cfg: ModelConfig) -> None:
    bad = [i for i in cfg.global_layers if not 0 <= i < cfg.num_layers]
    if bad or not cfg.global_layers:
        raise ConfigError(f"model.global_layers must name layers in [0, {cfg.num_layers}) and "
                          f"not be empty for family 'spade', got {cfg.global_layers}")


register(Family("spade", lambda cfg: tuple(
    "global" if i in cfg.global_layers else cfg.local_attention for i in range(cfg.num_layers)),
    fields={"local_attention": "window"}, check=_check_spade))
register(Family("spade_chunk", variant_of="spade", fields={"local_attention": "chunk"}))
register(Family("transformer", lambda cfg: ("full",) * cfg.num_layers))
register(Family("local", lambda cfg: (cfg.local_attention,) * cfg.num_layers,
                fields={"local_attention": "window"}))
register(Family("s4", lambda cfg: ("s4",) * cfg.num_layers))
