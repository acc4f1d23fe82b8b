"""LRA experiment configs: what an LRA task adds to the shared builder (spade_jax.train.config_builder).

Each `configs/<task>.py` calls `build(task, arg, paper=..., quick=..., smoke=...)` with its own
hyperparameters; the config-path argument chooses the family and the variant, big_vision style:

    configs/listops.py                       paper-scale SPADE run
    configs/listops.py:quick                 CPU run (generated data, <= 10 min on 2 cores)
    configs/text.py:model=transformer,quick  another family, quick
    configs/pathx.py:smoke                   seconds, for tests

Families: every family of spade_jax.model.families: spade (window attention beside the global S4 layer;
default), spade_chunk (chunk attention), transformer (full attention), local (window attention
only), s4 (S4 blocks only).
"""
import ml_collections

from lra import tasks  # noqa: F401  (registers the LRA tasks with spade_jax.train.job)
from lra.data.specs import get_spec
from spade_jax.train import config_builder
from spade_jax.model import families

# What every task's smoke variant shares (seconds: a tiny model, two steps, one eval batch);
# a task's own SMOKE dict adds its data and may override any of these.
SMOKE_COMMON = {
    "model.num_layers": 2, "model.d_model": 16, "model.num_heads": 2, "model.d_ff": 32,
    "model.radius": 3, "model.chunk_size": 8, "model.s4.d_state": 4, "batch_size": 2,
    "num_train_steps": 2, "eval_every": 0, "checkpoint_every": 0, "log_every": 1,
    "max_eval_batches": 1, "show_steps": False, "async_checkpoints": False,
}
# What the quick variants share (a 2-layer, 64-wide model); tasks set data, steps and the rest.
QUICK_COMMON = {
    "model.num_layers": 2, "model.d_model": 64, "model.num_heads": 4, "model.d_ff": 128,
    "model.dropout": 0.0,
}


def build(task: str, arg, *, paper: dict, quick: dict, smoke: dict,
          paper_by_family: dict | None = None,
          quick_by_family: dict | None = None) -> ml_collections.ConfigDict:
    """The config of `task` for the family and variant named in `arg`.

    paper_by_family: {family: overrides} on top of `paper` in that family's paper variant only
      (the baselines' own published recipes; see docs/recipes.md).
    quick_by_family: {family: overrides} applied on top of `quick` for that family's quick
      variant (e.g. fewer steps for the transformer, whose full attention is slower on CPU, to
      keep every quick run within its 10-minute budget).
    """
    c = config_builder.build(task, arg, families=tuple(families.FAMILIES),
                             task_fields=lambda c: _task_fields(c, task), paper=paper, quick=quick,
                             smoke=smoke, quick_common=QUICK_COMMON, smoke_common=SMOKE_COMMON,
                             paper_by_family=paper_by_family, quick_by_family=quick_by_family)
    # model.max_len follows the data's length, also when --config.data_options.* changes it; a
    # derived reference (ml_collections), so that setting model.max_len itself changes only it
    # (a plain reference would write the new value back into data_options)
    if "max_length" in c.data_options:
        c.model.max_len = c.data_options.get_ref("max_length") * 1
    if "image_size" in c.data_options:
        side = c.data_options.get_ref("image_size")
        c.model.max_len = side * side
    return c


def _task_fields(c: ml_collections.ConfigDict, task: str) -> None:
    """The LRA fields (data folders, reader and generator options) and the model's head and
    sizes from the task's spec (lra.data.TASKS)."""
    spec = get_spec(task)
    c.data_dir = ""  # the unpacked LRA release; "" in quick/smoke: generated into the cache
    c.data_cache_dir = ""  # the tokenised-split cache; "": <data_dir>/.lra_cache (read-only data)
    c.data_options = ml_collections.ConfigDict()  # reader options (max_length, difficulty, ...)
    c.generate = ml_collections.ConfigDict()  # generator options for quick/smoke defaults
    c.model.update(vocab_size=spec.vocab_size, num_classes=spec.num_classes,
                   max_len=spec.max_length, pad_id=spec.pad_id,
                   head="retrieval" if spec.dual else "classify")
