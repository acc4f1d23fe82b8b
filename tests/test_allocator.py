"""spade_jax.runtime.allocator: which malloc a CPU run preloads, and the re-executed entry point."""
import os
import subprocess
import sys

import pytest

from spade_jax.runtime import allocator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fake_libraries(tmp_path, monkeypatch):
    """A search path holding (empty) jemalloc and tcmalloc libraries."""
    for name in ("libjemalloc.so.2", "libtcmalloc_minimal.so.4"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(allocator, "SEARCH_DIRS", [str(tmp_path)])
    return tmp_path


def test_auto_prefers_jemalloc_and_keeps_an_existing_preload(fake_libraries):
    env = allocator.preload_env({"LD_PRELOAD": "/opt/other.so", "MALLOC_CONF": "narenas:2"})
    assert env["LD_PRELOAD"] == f"{fake_libraries}/libjemalloc.so.2:/opt/other.so"
    assert env["MALLOC_CONF"] == allocator.JEMALLOC_CONF + ",narenas:2"


def test_tcmalloc_when_asked_and_system_leaves_malloc_alone(fake_libraries):
    env = allocator.preload_env({allocator.ENV: "tcmalloc"})
    assert env["LD_PRELOAD"] == f"{fake_libraries}/libtcmalloc_minimal.so.4"
    assert "MALLOC_CONF" not in env
    assert "LD_PRELOAD" not in allocator.preload_env({allocator.ENV: "system"})
    assert not allocator.wanted({allocator.ENV: " System"})
    assert allocator.wanted({}) and allocator.wanted({allocator.ENV: "tcmalloc"})


def test_an_allocator_already_preloaded_is_not_doubled(fake_libraries):
    env = {"LD_PRELOAD": "/usr/lib/libtcmalloc.so.4"}
    assert allocator.preload_env(env)["LD_PRELOAD"] == "/usr/lib/libtcmalloc.so.4"


def test_nothing_found_means_the_system_malloc_unless_one_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(allocator, "SEARCH_DIRS", [str(tmp_path)])
    assert "LD_PRELOAD" not in allocator.preload_env({})
    with pytest.raises(ValueError, match="SPADE_JAX_MALLOC=jemalloc: no jemalloc library.*"
                                         "libjemalloc2"):
        allocator.preload_env({allocator.ENV: "jemalloc"})


def test_a_bad_choice_names_the_variable():
    with pytest.raises(ValueError, match="SPADE_JAX_MALLOC='glibc'.*auto, jemalloc"):
        allocator.choose({allocator.ENV: "glibc"})
    with pytest.raises(ValueError, match="SPADE_JAX_MALLOC='glibc'"):
        allocator.wanted({allocator.ENV: "glibc"})


_PROBE = ("from spade_jax.runtime import allocator; allocator.reexec_if_needed(); "
          "import os; print(allocator.active(), os.environ.get('MALLOC_CONF'))")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")
def test_entry_point_reexecutes_itself_with_the_library_loaded():
    name, path = allocator.choose({})
    if path is None:
        pytest.skip("no jemalloc or tcmalloc installed on this machine")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", allocator.ENV)}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0] == name
    if name == "jemalloc":
        assert out[1] == allocator.JEMALLOC_CONF
    env[allocator.ENV] = "system"
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["None", "None"]
