"""Registering a task or a family breaks no unrelated test: the whole default suite, run with a
seventh LRA task and a sixth model family registered as docs/architecture.md's recipes say
(tests/extras/registrations.py, registered in every test process by tests/conftest.py when
SPADE_JAX_TEST_EXTRAS=1). Long: it is the default suite a second time."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.long
def test_the_default_suite_passes_with_a_seventh_task_and_a_sixth_family():
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR", "PYTEST_XDIST_WORKER")}
    env["SPADE_JAX_TEST_EXTRAS"] = "1"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-4000:]
    assert " passed" in done.stdout and "skipped" in done.stdout  # (the two docs-page checks)


def test_the_extras_register_a_seventh_task_and_a_sixth_family_that_run(tmp_path, monkeypatch):
    """What the long run registers works: the task's data generated and read, the family built
    for it, through the LRA config builder (a cheap check that the extras stay true)."""
    import jax
    from lra import configs, tasks
    from lra.data.specs import TASKS
    from spade_jax.model import families, models
    from spade_jax.model.config import ModelConfig
    from tests.extras import registrations
    monkeypatch.setattr(families, "FAMILIES", dict(families.FAMILIES))  # restored after
    before = dict(TASKS)
    try:
        registrations.register()
        assert registrations.TASK in TASKS and registrations.FAMILY in families.FAMILIES
        registrations.write(str(tmp_path), 12, 0, digits=8)
        config = configs.build(registrations.TASK, f"model={registrations.FAMILY},smoke",
                               paper={}, quick={}, smoke={})
        task = tasks.LRATask(registrations.TASK, str(tmp_path))
        batch = next(task.train_iterator(batch_size=2, seed=0, shard_index=0, shard_count=1))
        cfg = ModelConfig.from_config(config.model)
        assert families.layer_kinds(cfg) == ("window", "s4")
        logits = jax.eval_shape(lambda: models.build_model(cfg).init_with_output(
            jax.random.PRNGKey(0), batch["inputs"], batch["mask"])[0])
        assert logits.shape == (2, 2)
    finally:
        TASKS.clear()
        TASKS.update(before)
