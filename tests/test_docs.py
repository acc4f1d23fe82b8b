"""The generated documentation is current: docs/configs.md matches the configs it is built from,
docs/tpu.md and the README's column the kept TPU compiles."""
import os

import pytest

from docs import config_reference

# Registrations made by tests alone (SPADE_JAX_TEST_EXTRAS) are in no committed page.
extras = pytest.mark.skipif(os.environ.get("SPADE_JAX_TEST_EXTRAS") == "1",
                            reason="a test-only task and family are registered: the committed "
                                   "pages list the repository's own")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@extras
def test_config_reference_is_up_to_date():
    with open(os.path.join(ROOT, "docs", "configs.md"), encoding="utf-8") as f:
        committed = f.read()
    assert committed == config_reference.render(), (
        "docs/configs.md is out of date: run python -m docs.config_reference")


def test_config_reference_lists_every_field_and_config():
    from spade_jax.train.defaults import default_config
    text = config_reference.render()
    engine = config_reference._flatten(default_config())
    for name in engine:
        assert f"| `{name}` |" in text, name
    for config in sorted(os.listdir(os.path.join(ROOT, "configs"))):
        if config.endswith(".py"):
            assert f"## `configs/{config}`" in text
    assert "| `model.s4.d_state` | `64` | S4 state size N (even) |" in text
    assert "| `num_train_steps` | `125000` | `100` |  |" in text  # Path-X: paper and quick


@extras
def test_tpu_page_and_readme_column_are_what_the_kept_compiles_make():
    """docs/tpu.md and the README's estimated-hours column are generated from
    docs/tpu_compiles.json (python -m docs.tpu_report): regenerating them changes nothing."""
    from spade_jax.runtime import accelerators
    if accelerators.libtpu_version() is None:
        pytest.skip('libtpu is not installed (pip install "jax[tpu]")')
    from docs import tpu_report
    for path, text in tpu_report.pages().items():
        with open(path, encoding="utf-8") as f:
            assert f.read() == text, f"{path} is out of date: run python -m docs.tpu_report --render"


def test_tpu_page_tells_a_refusal_from_a_compile_that_ran_out_of_time():
    """A compile stopped by the sweep's time limit has no verdict; only the compiler's refusal
    (or a job that does not fit) is a failure on the page."""
    from docs import tpu_report
    assert tpu_report._verdict(None) == "not compiled yet"
    timed_out = {"status": None, "error": "not compiled within 1800 s", "wall_s": 1800}
    assert tpu_report._verdict(timed_out) == "not compiled within 1800 s here: no verdict"
    refused = {"status": 1, "error": "Traceback ...\nRESOURCE_EXHAUSTED: Ran out of memory"}
    assert tpu_report._verdict(refused) == "FAILS: RESOURCE_EXHAUSTED: Ran out of memory"
    report = {"steps": [{"step": "train", "fits": False}, {"step": "eval", "fits": True}]}
    assert tpu_report._verdict({"status": 3, "report": report}) == "does NOT fit (train)"
