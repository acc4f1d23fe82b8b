"""`python -m benchmarks.<name> --quick` end to end, at the smallest sizes (seconds each): the
scripts run, print their table and target lines, and write their outputs. Numbers are not
checked: benchmarks are never timed unit tests."""
import importlib.util
import json
import subprocess
import sys

import pytest

from benchmarks import ROOT, generate
from spade_jax.runtime import local_cluster
from benchmarks.rows import OK

pytestmark = pytest.mark.slow


def _run(name, out, *flags):
    env = local_cluster.cpu_env(1)  # the suite's other XLA flags kept
    return subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--quick", f"--out={out}",
                           *flags], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def _check_outputs(out, name, statuses):
    record = json.loads((out / f"{name}.json").read_text())
    assert [r["status"] for r in record["rows"]] == statuses
    assert record["header"]["backend"] == "cpu" and record["header"]["jax"]
    assert (out / f"{name}.png").stat().st_size > 0 and (out / f"{name}.md").stat().st_size > 0
    return record


@pytest.mark.long  # reproduce --quick runs the same point function
def test_scaling_quick(tmp_path):
    proc = _run("scaling", tmp_path / "scaling", "--families=spade,transformer", "--scopes=block",
                "--lengths=256")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "| block | spade | 256 | ok |" in proc.stdout
    assert "| block | transformer | 256 | ok |" in proc.stdout
    assert ("target: SPADE block fwd+bwd at L=256: speed-up over the full-attention block"
            in proc.stdout)
    record = _check_outputs(tmp_path / "scaling", "scaling", [OK, OK])
    assert record["rows"][0]["layers"] == ["global"] and record["rows"][1]["layers"] == ["full"]


@pytest.mark.long  # reproduce --quick runs the same point function
def test_mfu_quick_counts_the_higher_of_two_peak_readings(tmp_path):
    proc = _run("mfu", tmp_path / "mfu")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "target: MFU of the SPADE training step at L=256" in proc.stdout
    row = _check_outputs(tmp_path / "mfu", "mfu", [OK])["rows"][0]
    square = [r for r in row["peak_matmuls"] if r["dtype"] == "float32" and r["batch"] == 1]
    assert [r["n"] for r in square] == [128, 256, 128, 256]  # before and after the step
    assert row["peak_flops"] == max(r["best_flops"] for r in square)
    assert row["mfu"] == pytest.approx(row["analytic_flops"] / row["median_s"] / row["peak_flops"])


@pytest.mark.long  # 20 s on 2 cores
def test_attention_quick_leaves_out_accelerator_kernels_on_cpu(tmp_path):
    proc = _run("attention", tmp_path / "attention", "--impls=local,splash,cudnn",
                "--passes=fwd", "--lengths=256")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "| local | fwd | 256 | ok |" in proc.stdout
    assert "- splash: needs the tpu backend; this machine's JAX backend is cpu" in proc.stdout
    assert "- cudnn: needs the gpu backend; this machine's JAX backend is cpu" in proc.stdout
    record = _check_outputs(tmp_path / "attention", "attention", [OK])
    assert sorted(record["not_measured"]) == ["cudnn", "splash"]


@pytest.mark.long  # reproduce --quick runs the same point function
def test_ssm_quick(tmp_path):
    proc = _run("ssm", tmp_path / "ssm", "--variants=dplr,conv", "--passes=fwd", "--lengths=256")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for row in ("| dplr | layer | fwd | 256 | ok |", "| dplr | kernel | fwd | 256 | ok |",
                "| conv | conv | fwd | 256 | ok |"):
        assert row in proc.stdout
    assert ("target: dplr kernel generation as a fraction of the dplr layer's forward time"
            in proc.stdout)
    _check_outputs(tmp_path / "ssm", "ssm", [OK] * 3)
    # The output folder now holds results: a second run into it is refused.
    again = _run("ssm", tmp_path / "ssm", "--variants=conv", "--passes=fwd", "--lengths=256")
    assert again.returncode != 0 and "never overwritten" in again.stderr


@pytest.mark.skipif(importlib.util.find_spec("spade_jax.model.decode") is not None,
                    reason="spade_jax.model.decode is present: run benchmarks.generate itself")
def test_generate_without_decoding_says_what_is_missing(tmp_path):
    proc = _run("generate", tmp_path / "generate")
    assert proc.returncode == 2 and generate.MISSING in proc.stderr
    assert not (tmp_path / "generate").exists()


@pytest.mark.long
@pytest.mark.skipif(importlib.util.find_spec("spade_jax.model.decode") is None,
                    reason="needs spade_jax.model.decode")
def test_generate_quick(tmp_path):
    proc = _run("generate", tmp_path / "generate", "--families=spade", "--lengths=64")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "| spade | decode | 64 | ok |" in proc.stdout
    assert "| spade | forward | 64 | ok |" in proc.stdout
    assert "target: SPADE decoding speed-up over re-running the forward at context 64" in proc.stdout
    decode, forward = _check_outputs(tmp_path / "generate", "generate", [OK, OK])["rows"]
    assert decode["cache_bytes"] > 0 and decode["prefill_s"] > 0 and "cache_bytes" not in forward


@pytest.mark.long  # 2.5 minutes on the 2-core CI machine kind; its parts are the long tests above
def test_reproduce_quick_runs_every_part_and_reports_each(tmp_path):
    """The accelerator command at CPU sizes: blocks, S4 layer (and its modes), MFU, and a
    time-boxed ListOps run that stops on its wall-clock budget and reports validation accuracy
    against time."""
    proc = _run("reproduce", tmp_path / "reproduce", "--budget_s=400")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    record = json.loads((tmp_path / "reproduce" / "reproduce.json").read_text())
    assert {name: part["status"] for name, part in record["parts"].items()} == {
        "blocks": OK, "s4": OK, "mfu": OK, "listops": OK}
    assert record["header"]["backend"] == "cpu" and record["header"]["git"]["commit"]
    listops = next(r for r in record["rows"] if r["part"] == "listops")
    assert listops["stopped_on_budget"] and listops["steps"] > 0
    assert listops["validation_curve"] and all(s is not None for s, _, _ in
                                               listops["validation_curve"])
    assert "| spade | bfloat16 | blocked | 256 | ok |" in proc.stdout
    modes = {r["variant"]: r["status"] for r in record["rows"] if r.get("modes")}
    assert modes == {"dplr": OK, "diag": OK, "chunked": OK}  # issue 22's S4 modes, side by side
    assert "- L=256: dplr / diag (fft) time = " in proc.stdout, proc.stdout[-3000:]


def test_benchmarks_run_from_any_folder(tmp_path):
    """The package installs `benchmarks` too: no 'No module named benchmarks' outside the root."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.reproduce", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--budget_s" in proc.stdout, proc.stderr[-2000:]
