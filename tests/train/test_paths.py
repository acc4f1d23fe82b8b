"""The workdir path layer (spade_jax.runtime.paths + the writers built on it) on local folders and on a
gs:// URL, the latter served by fsspec's in-memory filesystem registered for the gs protocol
(the same epath code path as Google Cloud Storage through gcsfs, without a network)."""
import json

import fsspec
import ml_collections
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from spade_jax.runtime import paths
from spade_jax.train import metrics, workdir as workdir_lib
from spade_jax.train.defaults import default_config


class _MemoryGCS(MemoryFileSystem):
    protocol = ("gs", "gcs")

    def __init__(self, *args, finalize_on_close=True, **kwargs):
        super().__init__(*args, **kwargs)


@pytest.fixture(params=["local", "gs"])
def root(request, tmp_path, monkeypatch):
    if request.param == "local":
        yield str(tmp_path / "run")
        return
    monkeypatch.setenv("EPATH_USE_TF", "false")
    fsspec.register_implementation("gcs", _MemoryGCS, clobber=True)
    fsspec.register_implementation("gs", _MemoryGCS, clobber=True)
    _MemoryGCS.store.clear()
    _MemoryGCS.pseudo_dirs.clear()
    _MemoryGCS.pseudo_dirs.append("")
    yield f"gs://bucket/runs/{tmp_path.name}"
    _MemoryGCS.store.clear()


def test_json_round_trip_and_a_garbled_file_is_named(root):
    path = paths.workdir_path(root) / "x.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    paths.write_json(path, {"a": [1, 2]})
    assert paths.read_json(path) == {"a": [1, 2]}
    path.write_text('{"a": [1,')
    with pytest.raises(ValueError, match=r"x\.json is not valid JSON \(line 1"):
        paths.read_json(path)
    assert str(paths.workdir_path(root)).startswith("gs://" if root.startswith("gs") else "/")


def test_metrics_keep_one_record_per_step_and_split_across_restarts(root):
    paths.workdir_path(root).mkdir(parents=True, exist_ok=True)
    writer = metrics.MetricsWriter(root, upload_every_s=0.0)
    for step in (1, 2, 3):
        writer.write(step, "train", {"loss": 1.0 / step})
    writer.write(3, "validation", {"accuracy": 0.5})
    writer.close()
    # a restart from the checkpoint at step 2 recomputes step 3 (and logs step 4)
    writer = metrics.MetricsWriter(root, upload_every_s=0.0)
    writer.write(3, "train", {"loss": 0.25})
    writer.write(4, "train", {"loss": 0.2})
    writer.close()
    records = metrics.read_records(root)
    assert [(r["step"], r["split"]) for r in records] == [
        (1, "train"), (2, "train"), (3, "train"), (3, "validation"), (4, "train")]
    assert records[2]["loss"] == 0.25
    lines = (paths.workdir_path(root) / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(records)  # compacted, not only de-duplicated on reading


def test_the_workdir_config_check_reads_and_writes_through_the_path_layer(root):
    config = default_config()
    workdir_lib.check(root, config)
    workdir_lib.record(root, config)
    written = paths.read_json(paths.workdir_path(root) / "config.json")
    assert written["model"]["d_model"] == config.model.d_model
    other = ml_collections.ConfigDict(config.to_dict())
    other.model.d_model += 1
    with pytest.raises(ValueError, match=r"another model config \(fields \['d_model'\]"):
        workdir_lib.check(root, other)
    assert paths.read_json(paths.workdir_path(root) / "config.json") == written


def test_learning_curve_is_written_into_the_workdir(root):
    from lra import report
    paths.workdir_path(root).mkdir(parents=True, exist_ok=True)
    writer = metrics.MetricsWriter(root, upload_every_s=0.0)
    writer.write(1, "train", {"loss": 2.0})
    writer.write(1, "validation", {"accuracy": 0.3})
    writer.close()
    path = report.plot_curve(root)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((paths.workdir_path(root) / "metrics.jsonl").read_text().split("\n")[0])
