"""notebooks/: the committed quickstart has no outputs and its first cell is the guarded install;
notebooks/run.py fails, naming the error, when a cell raises (CI relies on it). Executing the
quickstart itself is CI's own step (`python notebooks/run.py` in .ci/run), not a test."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(ROOT, "notebooks", "quickstart.ipynb")


def _cells():
    with open(QUICKSTART, encoding="utf-8") as f:
        return json.load(f)["cells"]


def test_quickstart_is_saved_without_outputs():
    code = [c for c in _cells() if c["cell_type"] == "code"]
    assert code
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None, "".join(cell["source"])


def test_quickstart_install_cell_is_guarded():
    first = "".join(next(c for c in _cells() if c["cell_type"] == "code")["source"])
    assert 'find_spec("spade_jax") is None' in first  # a no-op where spade_jax is installed
    assert '"google.colab" not in sys.modules' in first  # pip runs on Colab only


def _notebook(path, source):
    cells = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
              "source": s} for s in source]
    with open(path, "w") as f:
        json.dump({"cells": cells, "metadata": {"kernelspec": {"name": "python3",
                   "display_name": "Python 3", "language": "python"}},
                   "nbformat": 4, "nbformat_minor": 5}, f)
    return str(path)


@pytest.mark.parametrize("source, status", [
    (["x = 6 * 7", "assert x == 42"], 0),
    (["x = 1", "raise ValueError('the third cell must not run')", "x = 2"], 1),
])
def test_run_py_fails_when_a_cell_raises(tmp_path, source, status):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    path = _notebook(tmp_path / "n.ipynb", source)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "notebooks", "run.py"), path,
                             "--out", str(tmp_path / "out.ipynb")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == status, result.stdout + result.stderr
    executed = json.load(open(tmp_path / "out.ipynb"))["cells"]
    if status:
        assert "the third cell must not run" in result.stderr
        assert executed[2]["execution_count"] is None  # stopped at the failing cell
    else:
        assert "every cell ran" in result.stdout


def test_install_cell_picks_the_jax_build_of_the_runtime(monkeypatch):
    """The first cell's accelerator detection (before jax is imported) and the pip requirement
    it installs on Colab: TPU and GPU runtimes get their jax build at the installed version."""
    import shutil
    namespace = {}
    first = "".join(next(c for c in _cells() if c["cell_type"] == "code")["source"])
    exec(compile(first, "install cell", "exec"), namespace)  # spade_jax is importable: no install
    detect, requirement = namespace["runtime_accelerator"], namespace["jax_requirement"]
    monkeypatch.delenv("COLAB_TPU_ADDR", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os.path, "exists", lambda path: False)
    monkeypatch.setattr(namespace["glob"], "glob", lambda pattern: [])
    assert detect() == "cpu" and requirement("cpu", "0.10.2") is None
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    assert detect() == "gpu" and requirement("gpu", "0.10.2") == "jax[cuda12]==0.10.2"
    monkeypatch.setenv("COLAB_TPU_ADDR", "10.0.0.2:8470")
    assert detect() == "tpu" and requirement("tpu", "0.10.2") == "jax[tpu]==0.10.2"
