"""Orbax checkpoints in the workdir: the latest k, the best by validation, and the data position.

Layout: WORKDIR/checkpoints/<step>/{state, data}  (the last `keep` steps)
        WORKDIR/best/<step>/{state, data}          (the best validation score so far)
`state` is the TrainState (sharded arrays, restored onto the same shardings); `data` is the
training iterator's state as JSON, so a restart continues with exactly the next batch. Orbax
writes each checkpoint to a temporary folder and renames it when complete, so a half-written
checkpoint is never found by `latest_step`.
"""
import os

import jax
import orbax.checkpoint as ocp

from spade_jax import paths


class CheckpointMismatchError(ValueError):
    pass


def _manager(directory, keep, async_save):
    return ocp.CheckpointManager(
        paths.workdir_path(directory),
        item_handlers={"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=async_save))


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _shapes(tree) -> dict:
    """{'params/encoder/.../kernel': shape} for arrays, abstract arrays or orbax metadata."""
    return {"/".join(_key_name(k) for k in path): tuple(getattr(leaf, "shape", ()) or ())
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


class Checkpoints:
    def __init__(self, workdir: str, keep: int, async_save: bool = True):
        root = paths.workdir_path(workdir)
        self.latest = _manager(root / "checkpoints", keep, async_save)
        self.best = _manager(root / "best", 1, async_save)

    def save(self, manager, step: int, state, data_state) -> None:
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   data=ocp.args.JsonSave(data_state)), force=True)

    def restore(self, manager, abstract_state, step=None):
        """(state, data_state, step) from `step` (default: the latest), or None if there is none.

        Raises CheckpointMismatchError, naming the differing parameters, when the checkpoint was
        written for other parameter shapes (another model config), and when its training state
        does not restore into this run's (another optimiser layout)."""
        step = manager.latest_step() if step is None else step
        if step is None:
            return None
        self._check_compatible(manager, step, abstract_state)
        try:
            restored = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        except (ValueError, KeyError, TypeError) as e:  # e.g. another optimiser's state layout
            raise CheckpointMismatchError(
                f"the checkpoint {manager.directory}/{step} does not fit this run's training state "
                f"(optimiser settings differ?): {e}. Use a new --workdir for a new config.") from e
        return restored["state"], restored["data"], step

    def _check_compatible(self, manager, step, abstract_state):
        want = _shapes(abstract_state.params)
        have = _shapes(manager.item_metadata(step)["state"]["params"])
        where = os.path.join(str(manager.directory), str(step))
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        shapes = [f"{k}: checkpoint {have[k]} vs model {want[k]}"
                  for k in sorted(set(want) & set(have)) if have[k] != want[k]]
        if missing or extra or shapes:
            lines = ([f"missing in checkpoint: {missing[:5]}"] if missing else []) + \
                    ([f"not in this model: {extra[:5]}"] if extra else []) + shapes[:5]
            raise CheckpointMismatchError(
                f"the checkpoint {where} was written for a different model config; refusing to "
                f"load it. Differences: " + "; ".join(lines) +
                ". Use a new --workdir for a new config (nothing was changed in this one).")

    def wait(self):
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self):
        self.latest.close()
        self.best.close()
