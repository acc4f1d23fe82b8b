"""The run's folder and its WORKDIR/config.json: one model config per workdir.

`check(workdir, config)` refuses a workdir that holds a run of another model config before
anything is written there; `record(workdir, config, provenance)` writes (process 0) the config
this invocation runs with, beside how it was made (spade_jax.train.provenance), once the
checkpoint in the workdir is known to fit.
"""
import json

import jax

from spade_jax.runtime import paths
from spade_jax.runtime.errors import ConfigError


def _path(workdir):
    return paths.workdir_path(workdir) / "config.json"


# Model fields that choose how the same function is computed, not which model: a run may resume
# with another value (another attention kernel, another rematerialisation).
HOW_COMPUTED = ("attention_impl", "remat")


def check(workdir, config) -> None:
    """Raises ConfigError when WORKDIR/config.json holds another model config (the fields that
    differ named; HOW_COMPUTED aside); nothing is written."""
    path = _path(workdir)
    if not path.exists():
        return
    previous = paths.read_json(path, expect=dict).get("model", {})
    current = json.loads(config.to_json_best_effort())["model"]
    for name in HOW_COMPUTED:
        previous.pop(name, None)
        current.pop(name, None)
    if previous != current:
        diff = sorted(k for k in set(previous) | set(current)
                      if previous.get(k) != current.get(k))
        raise ConfigError(f"{workdir} holds a run with another model config (fields {diff} "
                          f"differ, see {path}); use a new --workdir")


def record(workdir, config, provenance: dict | None = None) -> None:
    """Writes WORKDIR/config.json (process 0): the config's fields, and under 'provenance'
    how this invocation was made."""
    if jax.process_index() != 0:
        return
    values = json.loads(config.to_json_best_effort())
    if provenance is not None:
        values["provenance"] = provenance
    path = _path(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    paths.write_json(path, values)
