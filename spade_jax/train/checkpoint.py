"""Orbax checkpoints in the workdir: the latest k, the best by validation, and the data position.

Layout: WORKDIR/checkpoints/<step>/{state, data}  (the last `keep` steps)
        WORKDIR/best/<step>/{state, data}          (the best validation score so far)
`state` is the TrainState (sharded arrays, restored onto the same shardings); `data` is the
training iterator's state as JSON, so a restart continues with exactly the next batch. Orbax
writes each checkpoint to a temporary folder and renames it when complete, so a half-written
checkpoint is never found by `latest_step`.

A restore verifies the checkpoint first: its metadata files, that its arrays have this run's
structure and shapes (else CheckpointMismatchError: another config, nothing is changed), and the
restore itself. A checkpoint that fails (a file emptied, truncated or garbled: a disk fault, a
copy cut short) is damaged: it is moved, never deleted, to WORKDIR/damaged/<folder>-<step>, the
move is logged with the file at fault, and the next older checkpoint is tried. In a
multi-process run every process takes the same decision.
"""
import contextlib
import errno
import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from spade_jax.runtime import paths, process
from spade_jax.runtime.errors import DataError, PathError, UserError

DAMAGED = "damaged"  # WORKDIR/damaged/<folder>-<step>: damaged checkpoints, set aside


class CheckpointMismatchError(UserError, ValueError):
    """The checkpoint was written for another model or optimiser config."""


class _Damaged(Exception):
    """A checkpoint that cannot be read back (the message says which file and why)."""


def _array_handlers():
    """Orbax's standard type handlers, but jax.Arrays written without replica-parallel slicing.

    Replica-parallel saving cuts every replicated array into one slice per replica, each an
    eagerly dispatched (and first compiled) `lax.slice`: with 8 devices, a tiny model's 4 saves
    took 12.0 s with it and 2.5 s without (2-core CPU VM). Written whole from replica 0 (orbax's
    own choice on GPUs), the same files come out; each shard is still written by the process
    that holds its replica 0."""
    handlers = [(ty, ocp.type_handlers.get_type_handler(ty))
                for ty in ocp.type_handlers.supported_types() if ty is not jax.Array]
    return ocp.type_handlers.create_type_handler_registry(
        (jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False)), *handlers)


def _manager(directory, keep, async_save):
    state = ocp.PyTreeCheckpointHandler(type_handler_registry=_array_handlers())
    return ocp.CheckpointManager(
        paths.workdir_path(directory),
        item_handlers={"state": state, "data": ocp.JsonCheckpointHandler()},
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


def read_failure(error):
    """The error in `error`'s chain that says a file could not be read (tensorstore's
    ValueError: OUT_OF_RANGE, NOT_FOUND, DATA_LOSS; an OSError; ...), or None. Orbax raises a
    bare Exception ("Encountered error while reading array index") from such an error."""
    seen, depth = error, 0
    while seen is not None and depth < 20:
        if isinstance(seen, (ValueError, KeyError, TypeError, OSError)):
            return seen
        seen, depth = seen.__cause__ or seen.__context__, depth + 1
    return None


def _first_line(error) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


def damage(folder):
    """What is wrong with the metadata files of the checkpoint `folder` (a step's folder): the
    first that is missing or not valid JSON, or a data item without the loop's iterator
    position; None when they are sound."""
    folder = paths.workdir_path(folder)
    for name, required in (("state/_METADATA", True), ("state/_sharding", False),
                           ("data/metadata", True)):
        path = folder / name
        if not path.exists():
            if required:
                return f"{path} is missing"
            continue
        try:
            value = json.loads(path.read_bytes())
        except ValueError as e:  # JSON or UTF-8
            return f"{path} is not valid JSON ({e})"
        if name == "data/metadata" and not (isinstance(value, dict) and "iterator" in value):
            return f"{path} holds no training-iterator position"
    return None


def _agree(problem):
    """Every process's verdict on one checkpoint: damaged if any process found it so."""
    if not process.multi_process():
        return problem
    from jax.experimental import multihost_utils
    anywhere = multihost_utils.process_allgather(np.int32(problem is not None))
    return problem or ("damaged as read by another process" if np.any(anywhere) else None)


def _no_space(error):
    """The 'no space left on device' OSError in `error`'s chain, or None."""
    seen, depth = error, 0
    while seen is not None and depth < 20:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return seen
        if "No space left on device" in str(seen):
            return seen
        seen, depth = seen.__cause__ or seen.__context__, depth + 1
    return None


def check_space(workdir: str, state) -> None:
    """Raises PathError when the (local) workdir's disk has less free space than one checkpoint
    of `state` (arrays or ShapeDtypeStructs) takes, with a tenth more: found before the first
    step, not at the first save."""
    if paths.is_url(workdir):
        return
    root = os.path.abspath(workdir)
    while not os.path.exists(root) and os.path.dirname(root) != root:
        root = os.path.dirname(root)  # the disk a new workdir will be made on
    need = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
               for x in jax.tree_util.tree_leaves(state))
    free = shutil.disk_usage(str(root)).free
    if free < 1.1 * need:
        gib = 2**30
        raise PathError(f"--workdir {workdir}: its disk has {free / gib:.2f} GiB free, and one "
                        f"checkpoint of this model takes about {need / gib:.2f} GiB: free some "
                        f"space or use a --workdir on another disk (nothing was written)")


def check_folders(workdir: str) -> None:
    """Raises PathError when the workdir is a file, or holds a file where a run keeps a folder
    (checkpoints, best, damaged): found before any work starts, not at the first save."""
    root = paths.workdir_path(workdir)
    if root.exists() and not root.is_dir():
        raise PathError(f"--workdir {workdir} cannot be made a folder (a file of that name "
                        f"exists): move it away or choose another --workdir")
    for name in ("checkpoints", "best", DAMAGED):
        if (root / name).exists() and not (root / name).is_dir():
            raise PathError(f"{root / name} is a file, where the run keeps its {name} folder: "
                            f"move it out of {root} (or use another --workdir), then rerun")


class Checkpoints:
    def __init__(self, workdir: str, keep: int, async_save: bool = True):
        self.root = paths.workdir_path(workdir)
        check_folders(workdir)
        self.latest = _manager(self.root / "checkpoints", keep, async_save)
        self.best = _manager(self.root / "best", 1, async_save)

    def save(self, manager, step: int, state, data_state) -> None:
        with self._space(step):
            manager.save(step, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state),
                                                       data=ocp.args.JsonSave(data_state)),
                         force=True)

    @contextlib.contextmanager
    def _space(self, step=None):
        """A full disk during a save (or its asynchronous finish) as one PathError naming the
        workdir and the last complete checkpoint to resume from."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - orbax may wrap the OSError
            if _no_space(e) is None:
                raise
            last = self.latest.latest_step()
            at = f" at step {step}" if step is not None else ""
            raise PathError(
                f"no space left on the disk of {self.root} while saving the checkpoint{at}: "
                f"free some space and rerun the same command; it resumes from the last complete "
                f"checkpoint{f' (step {last})' if last is not None else ''}") from None

    def restore(self, manager, abstract_state):
        """(state, data_state, step) of the newest intact checkpoint of `manager`, or None if
        there is none. Damaged ones are set aside on the way (see the module docstring).

        Raises CheckpointMismatchError, naming the differing parameters, when the checkpoint was
        written for other parameter shapes (another model config) or another training-state
        layout (other optimiser settings)."""
        for step in sorted(manager.all_steps(), reverse=True):
            problem = None
            try:
                self._check_compatible(manager, step, abstract_state)
            except _Damaged as e:
                problem = str(e)
            problem = _agree(problem)
            if problem is None:
                try:
                    restored = manager.restore(step, args=ocp.args.Composite(
                        state=ocp.args.PyTreeRestore(abstract_state, restore_args=(
                            ocp.checkpoint_utils.construct_restore_args(abstract_state))),
                        data=ocp.args.JsonRestore()))
                except Exception as e:  # noqa: BLE001 - orbax wraps a failed read in a bare Exception
                    cause = read_failure(e)
                    if cause is None:
                        raise
                    problem = f"its arrays cannot be read ({_first_line(cause)})"
                problem = _agree(problem)
                if problem is None:
                    return restored["state"], restored["data"], step
            self._set_aside(manager, step, problem)
        return None

    def _check_compatible(self, manager, step, abstract_state):
        where = paths.workdir_path(manager.directory) / str(step)
        problem = damage(where)
        if problem:
            raise _Damaged(problem)
        try:
            metadata = manager.item_metadata(step)["state"]
        except Exception as e:  # noqa: BLE001 - as in restore: what orbax wraps a failed read in
            cause = read_failure(e)
            if cause is None:
                raise
            raise _Damaged(f"its metadata cannot be read ({_first_line(cause)})") from None
        if metadata is None:
            raise _Damaged(f"{where}/state holds no arrays")
        want, have = _shapes(abstract_state.params), _shapes(metadata["params"])
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
        want, have = _shapes(abstract_state), _shapes(metadata)
        differ = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        if differ:
            raise CheckpointMismatchError(
                f"the checkpoint {where} holds another training state (optimiser settings "
                f"differ: {differ[:3]}{' ...' if len(differ) > 3 else ''}); refusing to load "
                f"it. Use a new --workdir for a new config (nothing was changed in this one).")

    def _set_aside(self, manager, step, problem):
        """Moves the damaged checkpoint `step` of `manager` to WORKDIR/damaged/ (process 0;
        the others wait) and tells the manager."""
        source = paths.workdir_path(manager.directory) / str(step)
        target = self.root / DAMAGED / f"{source.parent.name}-{step}"
        for k in range(2, 1000):
            if not target.exists():
                break
            target = self.root / DAMAGED / f"{source.parent.name}-{step}-{k}"
        if jax.process_index() == 0:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                source.rename(target)
            except (OSError, NotImplementedError) as e:
                raise DataError(f"the checkpoint {source} is damaged ({problem}) and could not "
                                f"be moved aside ({e}): move it out of {source.parent}, then "
                                f"rerun") from None
            message = (f"the checkpoint {source} is damaged ({problem}); moved it to {target} "
                       f"and going on from the one before it")
            logging.warning(message)
            print(message, flush=True)
        if process.multi_process():
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"checkpoint {source} set aside")
        manager.reload()

    def wait(self):
        with self._space():
            self.latest.wait_until_finished()
            self.best.wait_until_finished()

    def close(self):
        self.latest.close()
        self.best.close()
