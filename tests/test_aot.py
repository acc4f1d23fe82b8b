"""Tests for `python -m spade_jax.aot`: jobs compiled by XLA's TPU compiler for Cloud TPU
topologies on this CPU machine (libtpu's compile-only devices; nothing runs), and the pieces of
its report that need no TPU (collectives, estimates, the compiler's out-of-memory message).

The compiling tests skip where libtpu is not installed (`pip install -e ".[test]"` installs it).
"""
import json
import math
import os
import subprocess
import sys

import jax
import pytest

from spade_jax.runtime import accelerators
from spade_jax import aot
from spade_jax.train import sharding
from spade_jax.runtime.errors import ConfigError
from spade_jax.train import aot as aot_lib, defaults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_libtpu = pytest.mark.skipif(accelerators.libtpu_version() is None,
                                  reason='libtpu is not installed (pip install "jax[tpu]")')
GiB = 2**30


def _run(tmp_path, capsys, *args) -> tuple:
    """(exit status, stdout, the --json report) of the command run in this process."""
    out = tmp_path / "report.json"
    status = aot.run(["aot", *args, f"--json={out}"])
    text = capsys.readouterr()
    report = json.loads(out.read_text()) if out.exists() else None
    return status, text.out + text.err, report


def test_accelerator_names_map_to_topologies():
    cases = {"v5litepod-8": ("v5e:2x4", 8, 16), "v5litepod-1": ("v5e:1x1", 1, 16),
             "v4-8": ("v4:2x2x1", 4, 32), "v4-32": ("v4:2x2x4", 16, 32),
             "v5p-8": ("v5p:2x2x1", 4, 95), "v6e-8": ("v6e:2x4", 8, 32)}
    for name, (topology, chips, hbm) in cases.items():
        accel = accelerators.parse(name)
        assert (accel.topology, accel.chips, accel.chip.hbm_bytes) == (topology, chips, hbm * GiB)
    for bad in ("v5e-8", "v4-6", "v5litepod-3", "tpu"):
        with pytest.raises(ConfigError, match=f"--accelerator={bad}: not a Cloud TPU "
                                              "accelerator type.*v5litepod-8"):
            accelerators.parse(bad)


def test_unknown_accelerator_is_a_one_line_user_error(tmp_path, capsys):
    status, text, report = _run(tmp_path, capsys, "--config=configs/listops.py:smoke",
                                "--accelerator=v5e-8")
    assert status == 2 and report is None
    assert text.startswith("error: --accelerator=v5e-8: not a Cloud TPU accelerator type")
    assert "Traceback" not in text


def test_collectives_are_read_from_the_optimised_hlo():
    hlo = "\n".join([
        "  %all-reduce.1 = (f32[10]{0}, bf16[4,8]{1,0}) all-reduce(f32[10]{0} %a, bf16[4,8] %b)",
        "  %ag = (f32[4]{0}, f32[16]{0}) all-gather-start(f32[4]{0} %c), dimensions={0}",
        "  %agd = f32[16]{0} all-gather-done((f32[4]{0}, f32[16]{0}) %ag)",
        "  ROOT %cp = s32[2,3]{1,0} collective-permute(s32[2,3]{1,0} %d)",
        "  %add = f32[10]{0} add(f32[10]{0} %x, f32[10]{0} %y)"])
    assert aot_lib.collectives(hlo) == [
        {"kind": "all-reduce", "count": 1, "bytes": 10 * 4 + 32 * 2},
        {"kind": "all-gather", "count": 1, "bytes": 16 * 4},
        {"kind": "collective-permute", "count": 1, "bytes": 6 * 4}]


def test_the_memory_traffic_is_read_by_source_from_the_optimised_hlo():
    """Operands and results as their tiled layouts store them; VMEM arrays (S(1)) in the total but
    not in HBM's; an unnamed prefetch charged to the op that uses it; a called computation's
    instructions not counted (the fusion that calls it is)."""
    hlo = "\n".join([
        "%f (x: f32[8,128]) -> f32[8,128] {",
        "  %x = f32[8,128]{1,0} parameter(0)",
        "  ROOT %n = f32[8,128]{1,0} negate(f32[8,128]{1,0} %x), metadata={op_name=\"inner\"}",
        "}",
        "ENTRY %main (p0: f32[8,128]) -> (f32[4,16]) {",
        "  %p0 = f32[8,128]{1,0:T(8,128)} parameter(0)",
        "  %cs = (f32[8,128]{1,0:T(8,128)S(1)}, f32[8,128]{1,0:T(8,128)}, u32[]{:S(2)}) "
        "copy-start(%p0)",
        "  %cd = f32[8,128]{1,0:T(8,128)S(1)} copy-done(%cs)",
        "  %fusion.1 = f32[8,128]{1,0:T(8,128)} fusion(%cd, %p0), kind=kLoop, calls=%f, "
        "metadata={op_name=\"jit(train_step)/transpose(jvp(SequenceClassifier))/encoder/"
        "layer_1/mixer/dot_general\" stack_frame_id=3}",
        "  %fusion.2 = f32[4,16]{1,0:T(8,128)} fusion(%fusion.1), kind=kLoop, calls=%f, "
        "metadata={op_name=\"jit(train_step)/jvp(SequenceClassifier)/encoder/layer_0/ffn/wi/"
        "dot_general\"}",
        "  ROOT %t = (f32[4,16]{1,0:T(8,128)}) tuple(%fusion.2)",
        "}"])
    tile = 8 * 128 * 4  # one f32 (8, 128) tile; f32[4, 16] is stored as one whole tile too
    assert aot_lib.traffic(hlo) == {
        "bytes": 7 * tile, "hbm_bytes": 5 * tile, "sources": [
            {"source": "bwd encoder/layer_1/mixer/dot_general", "bytes": 5 * tile,
             "hbm_bytes": 3 * tile},  # the prefetch (2 tiles, 1 in HBM) and the fusion
            {"source": "fwd encoder/layer_0/ffn/wi/dot_general", "bytes": 2 * tile,
             "hbm_bytes": 2 * tile}]}


def test_the_compilers_estimate_is_kept_only_where_sane():
    assert aot_lib.sane_estimate(-37.8, 0.1) is None  # seen for the full Path-X step
    assert aot_lib.sane_estimate(float("nan"), 0.1) is None
    assert aot_lib.sane_estimate(0.01, 0.1) is None  # far below the roofline floor
    assert aot_lib.sane_estimate(0.12, 0.1) == 0.12
    chip = accelerators.CHIPS["v5e"]
    assert aot_lib.roofline_s(197e12, 0, chip) == pytest.approx(1.0)
    assert aot_lib.roofline_s(0, 819e9 * 2, chip) == pytest.approx(2.0)


def test_the_compilers_out_of_memory_refusal_is_an_answer():
    error = RuntimeError("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory "
                         "required for HLO temporaries (48.10G) exceeds available HBM (30.75G)\n"
                         "more detail")
    oom = aot_lib.out_of_memory(error)
    assert oom["needed_bytes"] == pytest.approx(48.10 * GiB)
    assert oom["available_bytes"] == pytest.approx(30.75 * GiB)
    assert oom["message"].startswith("RESOURCE_EXHAUSTED: Ran out of memory on HBM")
    assert aot_lib.out_of_memory(ValueError("something else")) is None


def test_a_batch_the_chips_do_not_divide_is_refused_with_what_to_use():
    from spade_jax.train import config_builder
    config = config_builder.load(os.path.join(ROOT, "configs/text.py"))  # MEGA's batch of 50
    with pytest.raises(ConfigError, match=r"config.batch_size \(50\) must be divisible.*use "
                       r"--config.batch_size=48 or --config.batch_size=56, or keep 50 with "
                       r"--config.mesh.data=2 --config.mesh.fsdp=1 --config.mesh.tensor=4"):
        defaults.validate(config, 8, 1)
    assert defaults.mesh_keeping_batch(24, 1, 16, 4) == {"data": 8, "fsdp": 1, "tensor": 2}


@pytest.fixture(scope="module")
def four_chips(tmp_path_factory):
    """The listops smoke job compiled for 4 v5e chips in a fresh process (libtpu initialises
    once per process): (the finished process, its --json report)."""
    if accelerators.libtpu_version() is None:
        pytest.skip('libtpu is not installed (pip install "jax[tpu]")')
    out = tmp_path_factory.mktemp("aot") / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "spade_jax.aot", "--config=configs/listops.py:smoke",
         "--accelerator=v5litepod-4", "--config.batch_size=8", f"--json={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"})
    return done, json.loads(out.read_text()) if out.exists() else None


def test_smoke_job_compiles_for_four_v5e_chips_and_libtpu_stays_quiet(four_chips):
    """The report, the JSON keys, exit 0, and none of libtpu's lines about the TPU VM it is not
    on."""
    done, report = four_chips
    assert done.returncode == 0, done.stderr[-3000:]
    for noise in ("TPU_ACCELERATOR_TYPE", "TPU_WORKER_HOSTNAMES", "InitGoogle"):
        assert noise not in done.stderr + done.stdout
    assert "on v5litepod-4: v5e:2x2, 4 chips" in done.stdout
    assert "yes, " in done.stdout and "GiB free" in done.stdout
    assert report["accelerator"] == "v5litepod-4" and report["chips"] == 4 and report["fits"]
    assert report["mesh"] == {"data": 4, "fsdp": 1, "tensor": 1}
    assert report["hbm_per_chip_bytes"] == 16 * GiB
    assert report["libtpu_version"] == accelerators.libtpu_version()
    train, evaluation = report["steps"]
    assert (train["step"], evaluation["step"]) == ("train", "eval")
    for step in (train, evaluation):
        for key in ("accelerator", "chips", "fits", "hbm_per_chip_bytes",
                    "peak_memory_per_chip_bytes", "flops_per_step", "bytes_accessed_per_step",
                    "estimate_s", "roofline_s", "recipe_hours", "libtpu_version"):
            assert key in step, key
        assert step["fits"] and step["flops_per_step"] > 0 and step["roofline_s"] > 0
        # the total is the compiler's parts; the arguments are the state and the batch
        assert step["peak_memory_per_chip_bytes"] == (
            step["argument_bytes"] + step["output_bytes"] - step["alias_bytes"]
            + step["temp_bytes"] + step["code_bytes"])
        assert step["argument_bytes"] >= step["state_bytes"] + step["batch_bytes"]
    # the donated state comes back in place: the train step's outputs alias it
    assert train["alias_bytes"] >= train["state_bytes"]
    assert train["recipe_hours"] == pytest.approx(train["step_s"] * 2 / 3600)
    assert [c["kind"] for c in train["collectives"]] == ["all-reduce"]  # the gradients
    # where the bytes go: the sources account for the compiler's own figure (tiles included)
    traffic = train["traffic"]
    assert 0.5 < traffic["bytes"] / train["bytes_accessed_per_step"] < 1.5
    assert 0 < traffic["hbm_bytes"] <= traffic["bytes"]
    sources = [s["source"] for s in traffic["sources"]]
    assert any(s.startswith("fwd encoder/layer_") for s in sources), sources
    assert any(s.startswith("bwd encoder/layer_") for s in sources), sources
    assert "where the bytes go (train step; " in done.stdout
    assert evaluation["recipe_hours"] is None


@needs_libtpu
def test_a_job_that_does_not_fit_exits_3_with_what_to_change(tmp_path, capsys):
    # full attention over 2048 tokens, 4096 rows on one chip: far more than its 16 GiB
    status, text, report = _run(
        tmp_path, capsys, "--config=configs/listops.py:model=transformer,smoke",
        "--accelerator=v5litepod-1", "--steps=train", "--config.batch_size=4096",
        "--config.data_options.max_length=2048")
    assert status == aot.EXIT_DOES_NOT_FIT == 3, text
    assert report["fits"] is False and report["steps"][0]["fits"] is False
    assert report["steps"][0]["peak_memory_per_chip_bytes"] > 16 * GiB
    assert "does not fit on v5litepod-1 (exit status 3)" in text
    assert "to make the train step fit:" in text and "--config.grad_accum_steps=" in text


@needs_libtpu
def test_a_language_models_decode_step_compiles(tmp_path, capsys):
    status, text, report = _run(tmp_path, capsys, "--config=configs/wikitext103.py:smoke",
                                "--accelerator=v5litepod-4", "--steps=decode",
                                "--config.model.vocab_size=300")
    assert status == 0, text
    (decode,) = report["steps"]
    assert decode["step"] == "decode" and decode["fits"] and decode["flops_per_step"] > 0
    assert decode["batch_bytes"] > 0  # the recurrent cache: S4 state, ring buffers


@needs_libtpu
def test_splash_attention_compiles_on_an_eight_chip_mesh(tmp_path, capsys):
    status, text, report = _run(
        tmp_path, capsys, "--config=configs/listops.py:smoke", "--accelerator=v5litepod-8",
        "--steps=train", "--config.batch_size=8", "--config.model.attention_impl=splash",
        "--config.model.position=none")
    assert status == 0, text
    assert report["chips"] == 8 and report["steps"][0]["fits"]


def test_two_slices_have_the_memory_per_chip_of_one(four_chips, tmp_path, capsys):
    """The same rows per chip on one v5litepod-4 and on two (multislice): the data axis spans
    the slices (config.mesh.dcn_data), so per-chip memory is the same."""
    _, one = four_chips
    status, text, two = _run(tmp_path, capsys, "--config=configs/listops.py:smoke",
                             "--accelerator=v5litepod-4", "--slices=2", "--steps=train",
                             "--config.batch_size=16")
    assert status == 0, text
    assert (one["chips"], two["chips"], two["slices"]) == (4, 8, 2)
    assert two["mesh"]["data"] == 8
    a, b = one["steps"][0], two["steps"][0]
    assert (a["argument_bytes"], a["state_bytes"]) == (b["argument_bytes"], b["state_bytes"])
    # the tiny model's totals (~21 MB) differ by the code and buffers of the two-level gradient
    # reduction (within the slice, then across): 6.5% here, far less for a recipe (docs/tpu.md)
    assert math.isclose(a["peak_memory_per_chip_bytes"], b["peak_memory_per_chip_bytes"],
                        rel_tol=0.1), (a, b)


@needs_libtpu
def test_auto_attention_on_a_tpu_is_flash_for_the_window_bias_and_splash_without_one():
    """model.attention_impl='auto' (the default) where the traced program is for TPU devices:
    flash for a layer that takes the window relative-position bias, splash for one that takes
    none, blocked for a dense bias; blocked on this CPU whatever the layer."""
    from spade_jax.model import attention_accel
    devices = accelerators.topology_devices(accelerators.parse("v5litepod-4"))
    with sharding.model_context(sharding.make_mesh({"data": -1}, devices), sharding.DEFAULT_RULES):
        assert attention_accel.resolve("auto", None) == "splash"
        assert attention_accel.resolve("auto", "window") == "flash"
        assert attention_accel.resolve("auto", "dense") == "blocked"
        assert attention_accel.resolve("blocked", "window") == "blocked"
    assert attention_accel.resolve("auto", "window") == "blocked"  # this CPU


@needs_libtpu
def test_the_data_axis_spans_the_slices():
    devices = accelerators.topology_devices(accelerators.parse("v5litepod-4"), slices=2)
    mesh = sharding.make_mesh({"data": -1, "fsdp": 2, "tensor": 1}, devices)
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
    slices = [[d.slice_index for d in row.flat] for row in mesh.devices]
    assert slices == [[0, 0], [0, 0], [1, 1], [1, 1]]  # data-major: a slice holds half of it
    with pytest.raises(ConfigError, match="dcn_data is 3, but the 8 devices form 2 slice"):
        sharding.make_mesh({"data": -1, "dcn_data": 3}, devices)
    with pytest.raises(ConfigError, match="must be a multiple of 2"):
        sharding.make_mesh({"data": 1, "fsdp": 8}, devices)
    assert sharding.slice_count(jax.devices()) == 1
