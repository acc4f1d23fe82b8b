"""LRA data: one reader per task, a memory-mapped token cache, grain pipelines.

    source = load_split('listops', 'train', data_dir)       # random access, cached on disk
    source[0]  # {'inputs': int32[2000], 'targets': 7}   (retrieval: 'inputs1', 'inputs2')
    batches = make_batches(source, batch_size=32, seed=0)   # grain IterDataset of batch dicts

`TASKS[task]` (lra.data.specs) is the registry of tasks: each TaskSpec carries its sizes, its
reader, generator, padding mask and report title.
"""
import os

from lra.data import files
from lra.data.cache import CACHE_FOLDER, CachedSplit
from lra.data.files import DataError
from lra.data.pipeline import make_batches
from lra.data.specs import SPLITS, TASKS, TaskSpec, check_split, get_spec, register_task, resolve
from spade_jax.runtime.errors import ConfigError


def load_split(task, split, data_dir, *, cache_dir=None, rebuild=False, **options):
    """Returns the tokenised `split` of `task` read from `data_dir` (cached; see lra.data.cache).

    task: a registered task's name (listops, text, retrieval, image, pathfinder, pathx, ...).
    split: train, validation, test.
    data_dir: the unpacked LRA release (`lra_release/lra_release`) or its parents, or a folder
      written by `python -m lra.generate`.
    cache_dir: where tokenised splits are cached; default `<data_dir>/.lra_cache`.
    rebuild: re-tokenise even when a cache entry exists.
    options: the task's reader options (TASKS[task].reader_options), e.g. max_length (listops,
      text, retrieval); image_size, difficulty, num_threads (pathfinder, pathx); others are
      refused with a ConfigError.
    Returns a random-access CachedSplit: `len(s)`, `s[i]` -> {'inputs': int32[L], 'targets':
    int}; `s.spec` is the task's TaskSpec (make_batches reads its mask from it).
    """
    spec = get_spec(task)
    check_split(split)
    accepted = spec.reader_options
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"{task}: unknown reader option(s) {unknown} (config.data_options); "
                          f"{task} accepts {accepted or 'none'}")
    if data_dir is None or not os.path.isdir(data_dir):
        raise DataError(f"{task}: data_dir {data_dir!r} does not exist. "
                        f"{files.generate_hint(task)}")
    if cache_dir is None:
        cache_dir = os.path.join(data_dir, CACHE_FOLDER)
    return resolve(spec.reader)(data_dir, split, spec=spec, cache_dir=cache_dir, rebuild=rebuild,
                                **options)


__all__ = ["TASKS", "SPLITS", "TaskSpec", "DataError", "CachedSplit", "load_split",
           "make_batches", "register_task"]
