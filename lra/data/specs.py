"""The registry of LRA tasks: everything about a task in one `TaskSpec`.

`TASKS[name]` (registration order = the report's column order) is what every other module reads:
the configs (vocab_size, num_classes, max_length, pad_id, dual, image_size), `load_split` (the
reader and the options it accepts), the pipeline (the padding mask: `spec.mask(inputs)`),
`lra.tasks` (the offline defaults of the quick / smoke configs) and `python -m lra.generate`
(the generator, its flags and default size), and `lra.report` (the column title).

Adding a task: write its reader (and generator), then `register_task(TaskSpec(...))` here.
Readers and generators are named by "module:function" and imported when first used, so this
module imports neither (nor PIL or grain).
"""
import dataclasses
import importlib
import inspect
from typing import Any, Callable, Optional, Union

import numpy as np

from spade_jax.model.config import MAX_LEN
from spade_jax.runtime.errors import ConfigError

SPLITS = ("train", "validation", "test")

Ref = Union[str, Callable]  # a function, or "module:attribute" naming one (imported when used)


def resolve(ref):
    """The object `ref` names: ref itself unless it is a "module:attribute" string.

    Resolved at each use, so a function replaced on its module (tests) is the one called.
    """
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclasses.dataclass(frozen=True)
class Option:
    """One generator option: the flag `--<name>` of `python -m lra.generate` and the key
    `config.generate.<name>` of the quick / smoke configs.

    choices: the allowed values: a tuple, or a Ref to a collection of them.
    minimum: the smallest allowed value (None: no bound; a None value is never checked).
    """

    name: str
    default: Any
    help: str
    type: type = int
    choices: Any = None
    minimum: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Generator:
    """How `python -m lra.generate` (and the quick / smoke configs) write a task's data.

    write: Ref to `write(out, num, seed, **options)`, writing `out/<folder>` in the layout the
      task's reader reads.
    folder: the folder written under `out`, formatted with the options (e.g.
      "pathfinder{image_size}/{difficulty}").
    default_num: the release's size (what --num means is the writer's: examples, images, ...).
    options: the writer's options the command line and configs may set, with their defaults.
    """

    write: Ref
    folder: str
    default_num: int
    options: tuple = ()

    def with_defaults(self, task, options) -> dict:
        """`options` with the defaults of those not given; ConfigError naming an unknown one."""
        declared = {o.name: o.default for o in self.options}
        unknown = sorted(set(options) - set(declared))
        if unknown:
            raise ConfigError(f"{task}: unknown generator option(s) {unknown} (config.generate); "
                              f"{task} accepts num, seed and {sorted(declared) or 'no others'}")
        return {**declared, **options}

    def target(self, options) -> str:
        """The folder, relative to `out`, that write() fills given these (complete) options."""
        return self.folder.format(**options)

    def run(self, task, out, num, seed, options) -> None:
        """Writes `num` examples of `task` under `out` (options: as with_defaults takes them)."""
        resolve(self.write)(out, num, seed, **self.with_defaults(task, options))


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One LRA task.

    vocab_size: number of token ids (ids are 0 .. vocab_size - 1).
    num_classes: number of target classes (targets are 0 .. num_classes - 1).
    max_length: default sequence length (inputs are cut or padded to it).
    reader: Ref to `load(data_dir, split, *, spec, cache_dir, rebuild=False, **options)`
      returning a CachedSplit (see lra.data.cache.build_or_load); its other keyword-only
      parameters are the reader options a config may set (config.data_options).
    generator: how to write offline data for the task (None: it has no generator).
    title: the task's column in lra.report's tables (their order: registration order).
    pad_id: the id of padding. For the pixel tasks (image, pathfinder, pathx) every position is a
      real token (pixel value 0 is black, not padding): their masks are all True.
    dual: True for retrieval: examples hold `inputs1` and `inputs2` instead of `inputs`.
    padded: True when sequences vary in length and are padded with pad_id.
    image_size: side of the square image for the pixel tasks, else None.
    oov_id: the id of out-of-vocabulary tokens, if the task has one (examples made mostly of it
      are counted in the split's summary).
    """

    name: str
    vocab_size: int
    num_classes: int
    max_length: int
    reader: Ref
    generator: Optional[Generator]
    title: str
    pad_id: int = 0
    dual: bool = False
    padded: bool = True
    image_size: Optional[int] = None
    oov_id: Optional[int] = None

    def mask(self, inputs):
        """bool (..., L), True for real tokens, of the int token ids `inputs` (..., L): `inputs !=
        pad_id` for padded tasks, all True otherwise. The one place the padding mask is decided."""
        inputs = np.asarray(inputs)
        return inputs != self.pad_id if self.padded else np.ones(inputs.shape, bool)

    def length(self, options=None) -> int:
        """The sequence length the reader gives under these reader options (config.data_options):
        max_length for the token tasks, image_size ** 2 for the pixel tasks."""
        options = options or {}
        if self.image_size is not None:
            return int(options.get("image_size") or self.image_size) ** 2
        length = options.get("max_length", self.max_length)
        if not isinstance(length, int) or not 1 <= length <= MAX_LEN:
            raise ConfigError(f"config.data_options.max_length must be a whole number of tokens "
                              f"in [1, {MAX_LEN:,}] ({self.name}'s own is {self.max_length:,}), "
                              f"got {length!r}")
        return length

    @property
    def fields(self):
        """The token fields of an example: ('inputs',), or ('inputs1', 'inputs2') when dual."""
        return ("inputs1", "inputs2") if self.dual else ("inputs",)

    @property
    def reader_options(self):
        """The sorted names of the reader's options (config.data_options)."""
        parameters = inspect.signature(resolve(self.reader)).parameters.items()
        return sorted(name for name, p in parameters if p.kind == p.KEYWORD_ONLY
                      and name not in ("spec", "cache_dir", "rebuild"))


TASKS = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Adds `spec` to TASKS (after the tasks already there); a ValueError if its name is taken."""
    if spec.name in TASKS:
        raise ValueError(f"LRA task {spec.name!r} is already registered")
    if spec.dual and not spec.padded:
        raise ValueError(f"{spec.name}: a dual task's sequences are padded (padded=True)")
    TASKS[spec.name] = spec
    return spec


def get_spec(task):
    """Returns TASKS[task], or raises a ConfigError listing the known tasks."""
    if task not in TASKS:
        raise ConfigError(f"unknown LRA task {task!r}; expected one of {sorted(TASKS)}")
    return TASKS[task]


def check_split(split):
    """Raises a ConfigError unless split is one of SPLITS."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; expected one of {list(SPLITS)}")


_IMAGE_OPTIONS = (
    Option("difficulty", "curv_contour_length_14", "contour length (LRA: curv_contour_length_14)",
           type=str, choices="lra.generate.pathfinder:DIFFICULTIES"),
    Option("per_folder", 1000, "images per imgs/<k> folder and metadata file", minimum=1),
    Option("processes", None, "worker processes (default: all cores)", minimum=1),
)


def _image_generator(image_size):
    size = Option("image_size", image_size, "image side in px",
                  choices="lra.generate.pathfinder:PRESETS")
    return Generator("lra.generate.pathfinder:write", "pathfinder{image_size}/{difficulty}",
                     200_000, (size,) + _IMAGE_OPTIONS)


register_task(TaskSpec(
    "listops", vocab_size=17, num_classes=10, max_length=2000, title="ListOps", oov_id=16,
    reader="lra.data.listops:load",
    generator=Generator("lra.generate.listops:write", "listops-1000", 100_000, (
        Option("min_length", 500, "keep trees longer than this (LRA: 500)", minimum=0),
        Option("max_length", 2000, "keep trees shorter than this (LRA: 2000)")))))
register_task(TaskSpec(
    "text", vocab_size=257, num_classes=2, max_length=4096, title="Text",
    reader="lra.data.text:load",
    generator=Generator("lra.generate.standins:write_text", "aclImdb", 25_000)))
register_task(TaskSpec(
    "retrieval", vocab_size=257, num_classes=2, max_length=4000, dual=True, title="Retrieval",
    reader="lra.data.retrieval:load",
    generator=Generator("lra.generate.standins:write_retrieval", "tsv_data", 20_000)))
register_task(TaskSpec(
    "image", vocab_size=256, num_classes=10, max_length=1024, padded=False, image_size=32,
    title="Image", reader="lra.data.image:load",
    generator=Generator("lra.generate.standins:write_image", "cifar-10-batches-bin", 60_000)))
register_task(TaskSpec(
    "pathfinder", vocab_size=256, num_classes=2, max_length=1024, padded=False, image_size=32,
    title="Pathfinder", reader="lra.data.pathfinder:load", generator=_image_generator(32)))
register_task(TaskSpec(
    "pathx", vocab_size=256, num_classes=2, max_length=16384, padded=False, image_size=128,
    title="Path-X", reader="lra.data.pathfinder:load", generator=_image_generator(128)))
