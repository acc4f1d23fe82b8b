"""A finished (or running) lm.main run, read back: its config, corpus and parameters."""
import dataclasses

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from lm import data
from lm.task import load_corpus, set_vocab_size
from spade_jax.runtime import paths
from spade_jax.model.config import ModelConfig
from spade_jax.runtime.errors import ConfigError, DataError, PathError
from spade_jax.train.checkpoint import damage, read_failure


@dataclasses.dataclass
class Run:
    config: ml_collections.ConfigDict
    corpus: data.Corpus
    model_config: ModelConfig
    params: dict
    step: int
    checkpoint: str


def _restore(manager, step):
    """The parameters of checkpoint `step`, onto the default device (whatever mesh wrote it)."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    metadata = manager.item_metadata(step)["state"]
    abstract = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
    return manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))["state"]["params"]


def restore_params(workdir: str, which: str = "best"):
    """(params, step) of the best-validation ('best') or latest ('last') checkpoint. 'best'
    falls back to 'last' when there is none; a damaged checkpoint (see
    spade_jax.train.checkpoint) is skipped with a warning for the next older one (lm.main sets
    it aside when it resumes)."""
    folders = {"best": "best", "last": "checkpoints"}
    if which not in folders:
        raise ConfigError(f"checkpoint must be 'best' or 'last', got {which!r}")
    damaged = []
    for name in ([which, "last"] if which == "best" else [which]):
        directory = paths.workdir_path(workdir) / folders[name]
        if not directory.is_dir():
            continue
        manager = ocp.CheckpointManager(directory, item_handlers={
            "state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()})
        for step in sorted(manager.all_steps(), reverse=True):
            problem = damage(directory / str(step))
            if problem is None:
                try:
                    params = _restore(manager, step)
                except Exception as e:  # noqa: BLE001 - orbax wraps a failed read (read_failure)
                    cause = read_failure(e)
                    if cause is None:
                        raise
                    problem = f"its arrays cannot be read ({type(cause).__name__}: {cause})"[:300]
            if problem is None:
                manager.close()
                return params, step
            damaged.append(f"{directory / str(step)}: {problem}")
            logging.warning("skipping the damaged checkpoint %s", damaged[-1])
        manager.close()
    if damaged:
        raise DataError(f"every checkpoint in {workdir} is damaged ({'; '.join(damaged)})")
    raise PathError(f"no checkpoint in {workdir} (expected {workdir}/best or "
                    f"{workdir}/checkpoints from lm.main)")


def load_run(workdir: str, checkpoint: str = "best") -> Run:
    """The config, corpus, model config and parameters of a run of lm.main."""
    root = paths.workdir_path(workdir)
    path = root / "config.json"
    if not path.is_file():
        why = "does not exist" if not root.exists() else "holds no config.json"
        raise PathError(f"--workdir {workdir} {why}: it must be a run directory of lm.main")
    config = paths.read_json(path, expect=dict)
    if config.get("task") != "wikitext103" or "data" not in config:
        task = config.get("task", "another program")
        raise ConfigError(f"--workdir {workdir} holds a run of {task!r} (lra.main?), not of "
                          f"lm.main: lm.evaluate and lm.generate read language-model runs only")
    config = ml_collections.ConfigDict(config)
    corpus = load_corpus(config)
    trained = config.model.vocab_size
    if trained and trained != len(corpus.vocab):
        raise DataError(f"the corpus {corpus.info['data_dir']} has changed since the run in "
                        f"{workdir} was trained: its vocabulary now has {len(corpus.vocab):,} "
                        f"entries, the run's model {trained:,}. Restore the corpus the run was "
                        f"trained on (the data_dir of {path}), or train a new run on this one")
    set_vocab_size(config, corpus)
    params, step = restore_params(workdir, checkpoint)
    return Run(config, corpus, ModelConfig.from_config(config.model), params, step, checkpoint)
