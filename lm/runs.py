"""A finished (or running) lm.main run, read back: its config, corpus and parameters."""
import dataclasses
import jax
import ml_collections
import orbax.checkpoint as ocp

from lm import data
from lm.task import load_corpus, set_vocab_size
from spade_jax import paths
from spade_jax.config import ModelConfig


@dataclasses.dataclass
class Run:
    config: ml_collections.ConfigDict
    corpus: data.Corpus
    model_config: ModelConfig
    params: dict
    step: int
    checkpoint: str


def restore_params(workdir: str, which: str = "best"):
    """(params, step) of the best-validation ('best') or latest ('last') checkpoint, onto the
    default device (whatever mesh wrote it). 'best' falls back to 'last' when there is none."""
    folders = {"best": "best", "last": "checkpoints"}
    if which not in folders:
        raise ValueError(f"checkpoint must be 'best' or 'last', got {which!r}")
    for name in ([which, "last"] if which == "best" else [which]):
        directory = paths.workdir_path(workdir) / folders[name]
        if not directory.is_dir():
            continue
        manager = ocp.CheckpointManager(directory, item_handlers={
            "state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()})
        step = manager.latest_step()
        if step is None:
            continue
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        metadata = manager.item_metadata(step)["state"]
        abstract = jax.tree_util.tree_map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))
        manager.close()
        return restored["state"]["params"], step
    raise FileNotFoundError(f"no checkpoint in {workdir} (expected {workdir}/best or "
                            f"{workdir}/checkpoints from lm.main)")


def load_run(workdir: str, checkpoint: str = "best") -> Run:
    """The config, corpus, model config and parameters of a run of lm.main."""
    path = paths.workdir_path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --workdir must be a run directory of lm.main")
    config = ml_collections.ConfigDict(paths.read_json(path))
    corpus = load_corpus(config)
    set_vocab_size(config, corpus)
    params, step = restore_params(workdir, checkpoint)
    return Run(config, corpus, ModelConfig.from_config(config.model), params, step, checkpoint)
