"""The benchmark harness's logic (benchmarks/common.py): fits, flags, the writer, fresh-process
points with their memory and budgets, sweeps that stop. No timing is asserted."""
import argparse
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import common, mfu
from spade_jax.config import ModelConfig

POINTS = "tests.benchmarks.points"
LENGTHS = [1024 * 2**i for i in range(7)]  # 1K .. 64K


@pytest.fixture(autouse=True)
def one_cpu_device(monkeypatch):
    """Points run in fresh processes: one CPU device there, as in a benchmark run."""
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")


def test_fit_exponent_recovers_the_power():
    times = [3e-7 * n**1.5 for n in LENGTHS]
    assert common.fit_exponent(LENGTHS, times) == pytest.approx(1.5, abs=1e-9)
    noisy = np.array(times) * (1 + 0.05 * np.array([1, -1, 1, -1, 1, -1, 1]))
    assert common.fit_exponent(LENGTHS, noisy) == pytest.approx(1.5, abs=0.03)
    assert common.fit_exponent(LENGTHS, [7.0] * 7) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="two distinct lengths"):
        common.fit_exponent([1024], [1.0])


def test_fit_series_uses_the_ok_rows_of_each_series():
    rows = [{"label": "a", "length": n, "status": common.OK, "median_s": 1e-6 * n}
            for n in LENGTHS[:3]]
    rows += [{"label": "a", "length": LENGTHS[3], "status": common.OUT_OF_MEMORY},
             {"label": "b", "length": 1024, "status": common.OK, "median_s": 1.0}]
    fits = common.fit_series(rows, lambda r: r.get("median_s"))
    assert list(fits) == ["a"]  # b has one length only
    assert fits["a"]["exponent"] == pytest.approx(1.0)
    assert (fits["a"]["from"], fits["a"]["to"], fits["a"]["points"]) == (1024, 4096, 3)


def test_lengths_flag():
    assert common.parse_lengths("1K,2K, 4096,1K") == [1024, 2048, 4096]
    assert common.length_label(65536) == "64K" and common.length_label(1000) == "1000"
    for bad in ("", "1.5K", "0", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            common.parse_lengths(bad)
    p = common.parser("test")
    quick = common.parse(p, ["--quick"])
    assert quick.lengths == [256, 512] and quick.repeats == 2
    full = common.parse(common.parser("test"), ["--lengths=16K", "--repeats=3"])
    assert full.lengths == [16384] and full.repeats == 3 and full.timeout_s == 600
    assert common.config_override("model.dropout=0.0") == ("model.dropout", 0.0)
    assert common.config_override("model.s4.kernel=diag") == ("model.s4.kernel", "diag")
    assert common.config_override("model.global_layers=(0, 2)") == ("model.global_layers", (0, 2))
    with pytest.raises(argparse.ArgumentTypeError):
        common.config_override("model.dropout")


def test_target_lines():
    met = common.target("speed-up", 31.0, 20, higher_is_better=True, unit="x")
    assert met["met"] is True and met["line"].endswith("measured: 31x met")
    missed = common.target("exponent", 1.3, 1.15, higher_is_better=False)
    assert missed["met"] is False and "<= 1.15" in missed["line"]
    assert missed["line"].endswith("missed")
    absent = common.target("speed-up", None, 20, higher_is_better=True,
                           missing="full: out of memory")
    assert absent["met"] is None and "not measured (full: out of memory)" in absent["line"]
    rows = {"spade": None, "full": {"status": common.OUT_OF_MEMORY, "length": 16384, "detail": "x"},
            "local": {"status": common.OK, "length": 16384}}
    assert common.why_missing(rows) == "spade: not run; full at L=16K: out of memory (x)"


def test_writer_writes_json_markdown_png_and_never_overwrites(tmp_path, capsys):
    out = common.output_dir("demo", str(tmp_path / "run"))
    rows = [{"label": "a", "length": n, "status": common.OK, "median_s": 1e-6 * n, "tokens": n,
             "base_bytes": 100, "peak_bytes": 100 + n * 1000} for n in LENGTHS[:3]]
    rows.append({"label": "a", "length": LENGTHS[3], "status": common.SKIPPED, "detail": "stopped"})
    columns = [("series", lambda r: r["label"])] + common.TIMING_COLUMNS + common.MEMORY_COLUMNS
    args = SimpleNamespace(quick=True, lengths=LENGTHS[:4], _private=1)
    plot = lambda path: common.loglog_plot(path, [  # noqa: E731
        {"title": "t", "ylabel": "us", "series": common.series_points(rows, common.per_token_us)}],
        "demo")
    markdown = common.write_report(out, "demo", header={"host": "test"}, args=args, rows=rows,
                                   sections=[("Table", common.markdown_table(rows, columns))],
                                   targets=[common.target("x", 1.0, 2, higher_is_better=False)],
                                   plot=plot)
    assert "| series | L | status |" in markdown and "| a | 8K | skipped: stopped |" in markdown
    assert "target: x <= 2; measured: 1 met" in capsys.readouterr().out
    record = json.loads((tmp_path / "run" / "demo.json").read_text())
    assert len(record["rows"]) == 4 and record["flags"] == {"quick": True, "lengths": LENGTHS[:4]}
    assert (tmp_path / "run" / "demo.md").read_text() == markdown
    assert (tmp_path / "run" / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(common.PathError, match="never overwritten"):
        common.output_dir("demo", str(tmp_path / "run"))


def test_default_output_folder_is_fresh_and_timestamped(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", str(tmp_path))
    path = common.output_dir("scaling")
    assert os.path.isdir(path) and os.path.dirname(path) == str(tmp_path / "scaling")
    assert not os.listdir(path)


def test_peak_memory_of_a_fresh_process_follows_its_allocation():
    """The child's peak is its own, also when started from a large process: ru_maxrss would
    carry this pytest worker's peak across execve (it did, inside the full suite)."""
    parent_peak = np.ones(1200 * 2**20 // 8)  # this process now peaks far above a point
    # Both sizes exceed what the warm-up may leave resident but free (which a small allocation
    # could reuse without raising the peak), so their difference is the 400 MB they differ by.
    small, large = (common.run_point(f"{POINTS}:allocate", {"megabytes": mb}, timeout_s=120)
                    for mb in (400, 800))
    assert small["status"] == large["status"] == common.OK
    assert small["memory_source"] == "process peak RSS"
    grown = common.memory_above_base(large) - common.memory_above_base(small)
    assert 340 * 2**20 < grown < 420 * 2**20  # 400 MB = 381 MiB more, a fresh process each
    del parent_peak


def test_points_past_their_budget_are_stopped():
    late = common.run_point(f"{POINTS}:sleep", {"seconds": 60}, timeout_s=4)
    assert late["status"] == common.OUT_OF_TIME and late["wall_s"] < 30
    big = common.run_point(f"{POINTS}:allocate", {"megabytes": 3000, "chunk_mb": 100,
                                                  "pause_s": 0.05}, timeout_s=120, memory_gb=0.8)
    assert big["status"] == common.OUT_OF_MEMORY and "budget" in big["detail"]


def test_a_sweep_stops_each_series_at_its_first_failure(capsys):
    args = SimpleNamespace(repeats=1, warmup=0, timeout_s=120, memory_gb=None)
    series = [{"label": "grows", "kwargs": {"fail_above": 1, "error": "memory"}},
              {"label": "bug", "kwargs": {"fail_above": 0, "error": "value"}}]
    rows = common.sweep(series, [1, 2, 3], args, f"{POINTS}:by_length")
    status = [(r["label"], r["length"], r["status"]) for r in rows]
    assert status == [("grows", 1, common.OK), ("grows", 2, common.OUT_OF_MEMORY),
                      ("grows", 3, common.SKIPPED), ("bug", 1, common.ERROR),
                      ("bug", 2, common.SKIPPED), ("bug", 3, common.SKIPPED)]
    assert rows[2]["detail"] == "stopped at L=2: out of memory"
    assert "ValueError: synthetic bug" in rows[3]["detail"]
    assert common.exit_code(rows) == 1 and common.exit_code(rows[:3]) == 0
    assert "grows L=2: out of memory" in capsys.readouterr().err


class _Compiled:
    def __init__(self, cost):
        self.cost = cost

    def cost_analysis(self):
        return self.cost


def test_xla_flops_reads_a_dict_or_a_list_of_dicts():
    assert mfu.xla_flops(_Compiled({"flops": 12.0, "bytes accessed": 3.0})) == 12.0
    assert mfu.xla_flops(_Compiled([{"flops": 5.0}, {"flops": 7.0}])) == 12.0
    assert mfu.xla_flops(_Compiled(None)) is None and mfu.xla_flops(_Compiled([{}])) is None


def test_forward_breakdown_adds_up_to_the_analytic_count():
    from spade_jax import flops
    cfg = ModelConfig(family="spade", d_model=128, num_heads=4, d_ff=256, radius=127,
                      max_len=4096)
    terms = mfu.forward_breakdown(cfg, 4096, 32)
    total = flops.forward_flops(cfg, 4096)
    assert terms["total"] == pytest.approx(32 * total["per_sequence"] + total["per_step_fixed"])
    assert sum(v for k, v in terms.items() if k != "total") == pytest.approx(terms["total"])
    assert all(v > 0 for v in terms.values())
