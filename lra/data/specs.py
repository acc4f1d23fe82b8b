"""What each LRA task looks like to a model: vocabulary, classes, default length.

`TASKS[name]` is read by configs (vocab_size, num_classes, max_length) and by the readers.
"""
import dataclasses
from typing import Optional

from spade_jax.errors import ConfigError

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One LRA task.

    vocab_size: number of token ids (ids are 0 .. vocab_size - 1).
    num_classes: number of target classes (targets are 0 .. num_classes - 1).
    max_length: default sequence length (inputs are cut or padded to it).
    pad_id: the id of padding. For the pixel tasks (image, pathfinder, pathx) every position is a
      real token (pixel value 0 is black, not padding): their masks are all True.
    dual: True for retrieval: examples hold `inputs1` and `inputs2` instead of `inputs`.
    padded: True when sequences vary in length and are padded with pad_id.
    image_size: side of the square image for the pixel tasks, else None.
    """

    name: str
    vocab_size: int
    num_classes: int
    max_length: int
    pad_id: int = 0
    dual: bool = False
    padded: bool = True
    image_size: Optional[int] = None


TASKS = {
    "listops": TaskSpec("listops", vocab_size=17, num_classes=10, max_length=2000),
    "text": TaskSpec("text", vocab_size=257, num_classes=2, max_length=4096),
    "retrieval": TaskSpec("retrieval", vocab_size=257, num_classes=2, max_length=4000, dual=True),
    "image": TaskSpec("image", vocab_size=256, num_classes=10, max_length=1024, padded=False,
                      image_size=32),
    "pathfinder": TaskSpec("pathfinder", vocab_size=256, num_classes=2, max_length=1024,
                           padded=False, image_size=32),
    "pathx": TaskSpec("pathx", vocab_size=256, num_classes=2, max_length=16384, padded=False,
                      image_size=128),
}


def get_spec(task):
    """Returns TASKS[task], or raises a ValueError listing the known tasks."""
    if task not in TASKS:
        raise ConfigError(f"unknown LRA task {task!r}; expected one of {sorted(TASKS)}")
    return TASKS[task]


def check_split(split):
    """Raises a ValueError unless split is one of SPLITS."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
