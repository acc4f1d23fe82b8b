"""--peer_dir of benchmarks.ssm and benchmarks.attention (benchmarks.peers), with fake clones
written here that mimic the peers' interfaces (S5's s5/ssm.py, LRA's local_attention.py): a
peer that loads gets its rows in the same table, one that is absent or does not load is left
out and the report says why. --quick sizes; the numbers are not checked, only what they are."""
import json
import textwrap

import pytest

from benchmarks import ROOT, attention, peers, ssm
from benchmarks.rows import OK, find
from spade_jax.runtime.errors import EXIT_USER_ERROR, PathError

pytestmark = pytest.mark.slow

# S5's interface (s5/ssm.py, s5/ssm_init.py) at the smallest size: the annotation that names
# the removed jax.numpy.DeviceArray is kept, and what the benchmark builds is written to
# seen.json next to the package.
FAKE_S5 = {
    "s5/__init__.py": "",
    "s5/ssm_init.py": """
        import jax.numpy as np


        def make_DPLR_HiPPO(N):
            Lambda = -0.5 + 1j * np.arange(N)
            V = np.eye(N, dtype=np.complex64)
            return Lambda, None, np.ones(N), V, np.ones(N)
        """,
    "s5/ssm.py": """
        import json
        import os
        from functools import partial

        import jax.numpy as np
        from flax import linen as nn


        class S5SSM(nn.Module):
            Lambda_re_init: np.DeviceArray
            Lambda_im_init: np.DeviceArray
            V: np.DeviceArray
            Vinv: np.DeviceArray
            H: int
            P: int
            C_init: str
            discretization: str
            dt_min: float
            dt_max: float
            conj_sym: bool = True
            clip_eigs: bool = False
            bidirectional: bool = False
            step_rescale: float = 1.0

            @nn.compact
            def __call__(self, u):
                seen = dict(H=self.H, P=self.P, C_init=self.C_init, conj_sym=self.conj_sym,
                            discretization=self.discretization,
                            bidirectional=self.bidirectional,
                            Lambda=list(self.Lambda_re_init.shape), V=list(self.V.shape),
                            input=list(u.shape))
                here = os.path.dirname(os.path.dirname(__file__))
                with open(os.path.join(here, "seen.json"), "w") as f:
                    json.dump(seen, f)
                d = self.param("D", nn.initializers.ones, (self.H,))
                return np.cumsum(u, axis=0) * self.Lambda_re_init.mean() + d * u


        def init_S5SSM(**kwargs):
            return partial(S5SSM, **kwargs)
        """,
}

# LRA's local_attention.py: its module imports the removed flax.deprecated.nn (so its
# LocalAttention class cannot be defined), its local_dot_product_attention is plain JAX.
FAKE_LRA = {
    "lra_benchmarks/models/local/local_attention.py": """
        import json
        import os

        from flax.deprecated import nn
        import jax
        import jax.numpy as jnp


        def local_dot_product_attention(query, key, value, dtype=jnp.float32, bias=None,
                                        axis=None, deterministic=False, precision=None):
            with open(os.path.join(os.path.dirname(__file__), "seen.json"), "w") as f:
                json.dump({"shape": list(query.shape), "axis": list(axis)}, f)
            scores = jnp.einsum("bqnhd,bknhd->bnhqk", query, key) / jnp.sqrt(query.shape[-1])
            return jnp.einsum("bnhqk,bknhd->bqnhd", jax.nn.softmax(scores, axis=-1), value)


        def _invert_perm(perm):
            return tuple(sorted(range(len(perm)), key=lambda i: perm[i]))


        class LocalAttention(nn.Module):
            pass
        """,
}


def _write(root, files):
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(text))


def _run(module, capsys, monkeypatch, out, *argv):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    status = module.main(["--quick", f"--out={out}", *argv])
    captured = capsys.readouterr()
    record = json.loads((out / f"{out.name}.json").read_text()) if status != 2 else None
    return status, captured.out, captured.err, record


@pytest.mark.long  # 20 s on 2 cores: a real timing sweep
def test_ssm_times_s5_from_peer_dir_as_its_train_script_builds_it(tmp_path, capsys, monkeypatch):
    _write(tmp_path / "peers" / "S5", FAKE_S5)
    status, out, err, record = _run(ssm, capsys, monkeypatch, tmp_path / "ssm", "--variants=scan",
                                    "--passes=fwd", "--lengths=64",
                                    f"--peer_dir={tmp_path / 'peers'}")
    assert status == 0, err[-3000:]
    assert "| s5 | layer | fwd | 64 | ok |" in out and "| x s5 |" in out
    assert [(r["variant"], r["status"]) for r in record["rows"]] == [("scan", OK), ("s5", OK)]
    # --quick: H 16, N 8 -> P = 4 complex modes (conj_sym), one HiPPO block whose eigenvectors
    # V (8, 8) keep their first 4 columns, as in S5's train.py; the batch vmapped away
    seen = json.loads((tmp_path / "peers" / "S5" / "seen.json").read_text())
    assert seen == dict(H=16, P=4, C_init="trunc_standard_normal", conj_sym=True,
                        discretization="zoh", bidirectional=True, Lambda=[4], V=[8, 4],
                        input=[64, 16])
    assert "s5/ssm.py" in record["peers"]["s5"] and record["peers_not_measured"] == {}
    scan, s5 = find(record["rows"], variant="scan"), find(record["rows"], variant="s5")
    target, = record["targets"]
    assert target["description"].startswith("the fastest S4D layer (scan) fwd at L=64")
    assert target["measured"] == pytest.approx(s5["median_s"] / scan["median_s"])


@pytest.mark.long  # 20 s on 2 cores: a real timing sweep
def test_attention_times_lra_blocks_through_its_plain_jax_function(tmp_path, capsys,
                                                                   monkeypatch):
    _write(tmp_path / "peers" / "long-range-arena", FAKE_LRA)
    status, out, err, record = _run(attention, capsys, monkeypatch, tmp_path / "attention",
                                    "--impls=local", "--passes=fwd", "--lengths=64",
                                    "--lra_block=16", f"--peer_dir={tmp_path / 'peers'}")
    assert status == 0, err[-3000:]
    assert "| lra_block | fwd | 64 | ok |" in out
    assert [(r["impl"], r["status"]) for r in record["rows"]] == [("local", OK),
                                                                  ("lra_block", OK)]
    # LocalAttention.apply's layout: L = 64 padded by a whole block of 16 to 80, reshaped to
    # (batch 1, block 16, 5 blocks, 2 heads, 8), attention over axis 1
    seen = json.loads((tmp_path / "peers" / "long-range-arena" / "lra_benchmarks" / "models" /
                       "local" / "seen.json").read_text())
    assert seen == {"shape": [1, 16, 5, 2, 8], "axis": [1]}
    assert "flax.deprecated" in record["peers"]["lra_block"]
    local, lra = find(record["rows"], impl="local"), find(record["rows"], impl="lra_block")
    target, = record["targets"]
    assert "LRA's block-16 attention" in target["line"]
    assert target["measured"] == pytest.approx(local["median_s"] / lra["median_s"])


def test_absent_peer_is_left_out_and_the_report_says_why(tmp_path, capsys, monkeypatch):
    (tmp_path / "peers").mkdir()
    status, out, err, record = _run(attention, capsys, monkeypatch, tmp_path / "attention",
                                    "--impls=local", "--passes=fwd", "--lengths=64",
                                    f"--peer_dir={tmp_path / 'peers'}")
    assert status == 0, err[-3000:]
    why = record["not_measured"]["lra_block"]
    assert why.startswith(f"absent: no folder {tmp_path / 'peers' / 'long-range-arena'}")
    assert "google-research/long-range-arena" in why
    assert f"## Not measured\n\n- lra_block: {why}" in out
    assert [r["impl"] for r in record["rows"]] == ["local"] and record["targets"] == []


def test_causal_attention_leaves_lra_out(tmp_path, capsys, monkeypatch):
    _write(tmp_path / "peers" / "long-range-arena", FAKE_LRA)
    status, out, err, record = _run(attention, capsys, monkeypatch, tmp_path / "attention",
                                    "--impls=local", "--passes=fwd", "--lengths=64", "--causal",
                                    f"--peer_dir={tmp_path / 'peers'}")
    assert status == 0, err[-3000:]
    assert "bidirectional only" in record["not_measured"]["lra_block"]
    assert [r["impl"] for r in record["rows"]] == ["local"]


def test_peer_that_does_not_load_is_left_out_with_its_error(tmp_path):
    _write(tmp_path / "S5", dict(FAKE_S5, **{"s5/ssm.py": "import jax.no_such_module\n"}))
    ok, why = peers.available(str(tmp_path), "s5", timeout_s=120)
    assert not ok
    assert why.startswith("cannot be loaded with this JAX / Flax: error:")
    assert "No module named 'jax.no_such_module'" in why
    _write(tmp_path / "long-range-arena", {"README.md": "not a clone"})
    ok, why = peers.available(str(tmp_path), "lra_block")
    assert not ok and "holds no lra_benchmarks/models/local/local_attention.py" in why


def test_peer_dir_must_be_a_folder_outside_the_checkout(tmp_path, capsys):
    assert peers.checked_dir(None) is None
    with pytest.raises(PathError, match="is not a folder"):
        peers.checked_dir(str(tmp_path / "missing"))
    with pytest.raises(PathError, match="inside this checkout"):
        peers.checked_dir(ROOT)
    status = attention.main(["--quick", f"--out={tmp_path / 'out'}",
                             f"--peer_dir={tmp_path / 'missing'}"])
    assert status == EXIT_USER_ERROR and "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
