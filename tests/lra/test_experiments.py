"""LRA experiments end to end: configs for every family, smoke runs through lra.main, the
report, and the errors users meet first."""
import glob
import json
import os
import subprocess
import sys

import pytest

from lra import configs, report
from lra.data import DataError
from lra.tasks import LRATask, resolve_data_dir
from spade_jax.train import config_builder
from spade_jax.model import families
from spade_jax.runtime import local_cluster
from spade_jax.model.config import ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
LRA_CONFIGS = [p for p in CONFIG_FILES if os.path.basename(p)[:-3] in report.TASK_ORDER]


_load = config_builder.load


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cache"))
    old = os.environ.get("SPADE_JAX_CACHE")
    os.environ["SPADE_JAX_CACHE"] = path
    yield path
    if old is None:
        del os.environ["SPADE_JAX_CACHE"]
    else:
        os.environ["SPADE_JAX_CACHE"] = old


@pytest.mark.parametrize("path", LRA_CONFIGS, ids=os.path.basename)
@pytest.mark.parametrize("family", list(families.FAMILIES))
@pytest.mark.parametrize("variant", ["", "quick", "smoke"])
def test_every_config_and_family_builds(path, family, variant):
    config = _load(path, f"model={family}" + (f",{variant}" if variant else ""))
    model = ModelConfig.from_config(config.model)
    assert config.model_name == family and config.variant == (variant or "paper")
    assert model.max_len >= 1 and model.num_classes >= 2
    docstring = open(path).read().split('"""')[1]
    assert f"python -m lra.main --config=configs/{os.path.basename(path)}" in docstring
    assert "Published test accuracy" in docstring and "hours" in docstring


def test_config_arguments_are_checked():
    path = LRA_CONFIGS[0]
    with pytest.raises(ValueError, match="unknown model family 'mega'"):
        _load(path, "model=mega")
    with pytest.raises(ValueError, match="'fast' not understood"):
        _load(path, "fast")


def test_quick_overrides_by_family_apply_to_that_family_only():
    paper = {"num_train_steps": 1000}
    quick = {"num_train_steps": 100, "batch_size": 4}
    by_family = {"transformer": {"num_train_steps": 10}}
    built = {f: configs.build("listops", f"model={f},quick", paper=paper, quick=quick, smoke={},
                              quick_by_family=by_family) for f in ("spade", "transformer")}
    assert built["spade"].num_train_steps == 100
    assert (built["transformer"].num_train_steps, built["transformer"].batch_size) == (10, 4)
    assert configs.build("listops", "model=transformer", paper=paper, quick=quick, smoke={},
                         quick_by_family=by_family).num_train_steps == 1000  # the paper variant untouched
    with pytest.raises(ValueError, match="unknown families \\['mega'\\]"):
        configs.build("listops", "quick", paper=paper, quick=quick, smoke={},
                      quick_by_family={"mega": {}})


def test_paper_config_without_data_says_where_the_release_goes(cache):
    config = _load(os.path.join(ROOT, "configs", "listops.py"))
    with pytest.raises(DataError, match=r"(?s)config.data_dir is not set.*listops-1000/basic_.*:quick"):
        resolve_data_dir(config)
    config.data_dir = "/nonexistent/lra"
    with pytest.raises(DataError, match="/nonexistent/lra"):
        resolve_data_dir(config)


def _run_main(workdir, config_arg, *extra):
    env = local_cluster.cpu_env(1)  # the suite's other XLA flags kept
    return subprocess.run([sys.executable, "-m", "lra.main", f"--config={config_arg}",
                           f"--workdir={workdir}", *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _check_smoke_run(proc, workdir, task):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["task"] == task and results["steps"] == 2
    assert 0.0 <= results["test_accuracy_at_best"] <= 1.0
    assert results["parameters"] > 0 and (workdir / "learning_curve.png").stat().st_size > 0
    assert "majority class" in proc.stdout
    assert "smoke run finished" in proc.stdout and "not results" in proc.stdout
    provenance = results["provenance"]  # how the result was made (issue 21)
    assert provenance["device_count"] >= 1 and provenance["versions"]["jax"]
    assert provenance["config_hash"] and results["invocation_wall_time_s"]
    table = report.table([str(workdir)])
    assert "| spade (smoke) |" in table and "| S4 (v2) | 59.60 |" in table
    return results


# Retrieval (two inputs, one shared encoder) goes through lra.main in the default run, as the
# first half of test_rerunning_a_finished_run_resumes_and_reports; ListOps goes through it in
# tests/train/test_multiprocess.py. Text (a classifier like listops), pathfinder, image and pathx
# (pixels: their readers in tests/lra, their models in tests/models) are in the long set: the
# suite's time budget is 10 minutes.
@pytest.mark.long
@pytest.mark.parametrize("path", [p for p in LRA_CONFIGS if not p.endswith("retrieval.py")],
                         ids=os.path.basename)
def test_smoke_variant_runs_through_lra_main(path, tmp_path, cache):
    workdir = tmp_path / "run"
    _check_smoke_run(_run_main(workdir, f"{path}:smoke"), workdir, os.path.basename(path)[:-3])


@pytest.mark.long  # families: tests/models; the engine is family-agnostic (spade trains in the smoke runs)
@pytest.mark.parametrize("family", [f for f in families.FAMILIES if f != "spade"])
def test_every_family_trains_a_step(family, tmp_path, cache):
    from spade_jax.train.loop import train_and_evaluate
    config = _load(os.path.join(ROOT, "configs", "listops.py"), f"model={family},smoke")
    config.batch_size = 8  # 8 simulated devices in-process
    task = LRATask(config.task, resolve_data_dir(config), config.data_options.to_dict())
    results = train_and_evaluate(config, str(tmp_path), task)
    assert results["steps"] == 2 and "best" in results


def test_bad_config_value_is_named(tmp_path, cache):
    proc = _run_main(tmp_path / "run", f"{LRA_CONFIGS[0]}:smoke", "--config.model.num_heads=3")
    assert proc.returncode != 0
    assert "model.d_model" in proc.stderr and "num_heads" in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_report_refuses_a_folder_without_results(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results.json"):
        report.table([str(tmp_path)])


def test_rerunning_a_finished_run_resumes_and_reports(tmp_path, cache):
    retrieval = os.path.join(ROOT, "configs", "retrieval.py")
    results = _check_smoke_run(_run_main(tmp_path / "run", f"{retrieval}:smoke"),
                               tmp_path / "run", "retrieval")
    again = _run_main(tmp_path / "run", f"{retrieval}:smoke")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from the checkpoint at step 2" in again.stdout
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test_accuracy_at_best"] == \
        results["test_accuracy_at_best"]


def test_report_table_rows_average_majority_and_wall_times(tmp_path):
    """Runs of one model on the paper's six tasks give an average; the majority row and the
    wall-time totals come from the results files; a model missing a task gets no average. Any
    other registered task is a column of its own ('-' here), outside the average."""
    from lra.published import PAPER_COLUMNS
    paper = PAPER_COLUMNS[:-1]
    runs = []
    for i, task in enumerate(paper):
        for model in ("spade", "transformer")[: 2 if task == "text" else 1]:
            run = tmp_path / f"{task}-{model}"
            run.mkdir()
            (run / "results.json").write_text(json.dumps({
                "task": task, "model": model, "variant": "quick", "wall_time_s": 100.0 + i,
                "test_accuracy_at_best": 0.5 + 0.01 * i, "majority_class_test_accuracy": 0.25}))
            runs.append(str(run))
    text = report.table(runs)
    row = _table_row
    percent = {t: f"{50 + i:.2f}" for i, t in enumerate(paper)}
    assert row("spade (quick)", percent, "52.50") in text
    assert row("transformer (quick)", {"text": "51.00"}, "-") in text
    assert row("majority class", dict.fromkeys(paper, "25.00"), "25.00") in text
    assert row("spade (quick)", {t: f"{100 + i}" for i, t in enumerate(paper)}, "615") in text
    assert row("transformer (quick)", {"text": "101"}, "101") in text


def _table_row(name, by_task, last):
    """A row of lra.report's tables: one cell per registered task ('-' where `by_task` has
    none), then the last column."""
    return (f"| {name} | " + " | ".join(by_task.get(t, "-") for t in report.TASK_ORDER)
            + f" | {last} |")
