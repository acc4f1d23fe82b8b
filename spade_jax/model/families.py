"""The registry of token mixers and model families: the one place that says what each is.

A mixer kind ('global', 'window', 'chunk', 'full', 's4') is a `Mixer`: the Flax module a Block
runs (spade_jax.model.layers), its forward FLOPs (spade_jax.model.flops), whether it decodes one token at a
time against a cache, and which form of the shared relative-position bias it takes.

A model family ('spade', 'spade_chunk', 'transformer', 'local', 's4') is a `Family`: the mixer
kind of each layer, given a ModelConfig, and the ModelConfig fields that `:model=<name>` sets.
A family with `variant_of` is a preset of another one (spade_chunk: spade with chunk attention):
it shares that family's layers and `model.family` value, and sets more fields.

Everything that lists families or mixers reads them from here: `ModelConfig` (the allowed
`model.family` values, `layer_kinds`, `relative_bias_kinds`), `layers.Block` (its mixer),
`models.Encoder` (the bias each layer takes), `flops.forward_flops`, `spade_jax.demo` and the
experiment configs (`lra.configs`: every family; `lm.configs`: the `lm_families()`, whose
mixers all decode). Adding one is one `register(...)` call below (and, for a new kind of
mixer, its module).
"""
import dataclasses
from typing import Callable, Mapping, Optional

from spade_jax.model import flops, layers
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
      model.position='relative': 'dense' ((1, heads, L, L); decoding: offsets up to max_len - 1),
      'window' ((heads, 2 * radius + 1) offsets), or None (no bias).
    """

    name: str
    build: Callable[[ModelConfig, str], object]
    flops: Callable[[ModelConfig, int], tuple]
    decodes: bool = False
    relative_bias: Callable[[ModelConfig], Optional[str]] = lambda cfg: None


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family (`:model=<name>` in the experiment configs).

    layer_kinds(cfg) -> the mixer kind (a MIXERS name) of each of cfg.num_layers layers.
    fields: the ModelConfig fields `:model=<name>` sets besides model.family.
    variant_of: another family whose layers and model.family value this one shares (then
      layer_kinds is that family's); None for a family of its own (model.family = name).
    """

    name: str
    layer_kinds: Optional[Callable[[ModelConfig], tuple]] = None
    fields: Mapping = dataclasses.field(default_factory=dict)
    variant_of: Optional[str] = None


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


def model_families() -> tuple:
    """The allowed values of model.family: the families that are not a variant of another."""
    return tuple(name for name, f in FAMILIES.items() if f.variant_of is None)


def model_fields(name: str) -> dict:
    """The ModelConfig fields `:model=<name>` sets: {'family': ..., **fields}."""
    entry = family(name)
    return {"family": entry.variant_of or name, **entry.fields}


def layer_kinds(cfg: ModelConfig) -> tuple:
    """The mixer kind of each layer of `cfg` (its model.family's layer_kinds)."""
    return family(cfg.family).layer_kinds(cfg)


def lm_families() -> tuple:
    """The families that can be a causal language model: every mixer they use (at their
    default configuration) decodes."""
    def decodes(name):
        cfg = ModelConfig(**model_fields(name), causal=True)
        return all(mixer(kind).decodes for kind in layer_kinds(cfg))
    return tuple(name for name in FAMILIES if decodes(name))


def _attention(kind: str, bias: Callable[[ModelConfig], Optional[str]]) -> Mixer:
    return Mixer(kind, lambda cfg, name: layers.SelfAttention(cfg, kind, name=name),
                 lambda cfg, length: (flops.attention_flops(cfg, kind, length), 0.0),
                 decodes=True, relative_bias=bias)


def _window_bias(cfg: ModelConfig) -> Optional[str]:
    """Window attention, and the global mixer when its local attention is the window."""
    return "window" if cfg.local_attention == "window" else None


register(Mixer("global", lambda cfg, name: layers.GlobalMixer(cfg, name=name),
               flops.global_mixer_flops, decodes=True, relative_bias=_window_bias))
register(_attention("window", _window_bias))
register(_attention("chunk", lambda cfg: None))
register(_attention("full", lambda cfg: "dense"))
register(Mixer("s4", lambda cfg, name: layers.S4Mixer(cfg, name=name), flops.s4_mixer_flops,
               decodes=True))

register(Family("spade", lambda cfg: tuple(
    "global" if i in cfg.global_layers else cfg.local_attention for i in range(cfg.num_layers)),
    fields={"local_attention": "window"}))
register(Family("spade_chunk", variant_of="spade", fields={"local_attention": "chunk"}))
register(Family("transformer", lambda cfg: ("full",) * cfg.num_layers))
register(Family("local", lambda cfg: (cfg.local_attention,) * cfg.num_layers,
                fields={"local_attention": "window"}))
register(Family("s4", lambda cfg: ("s4",) * cfg.num_layers))
