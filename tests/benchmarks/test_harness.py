"""The benchmark harness's logic (benchmarks/flags, fit, report, plots, isolation, sweep): fits,
flags, the writer, fresh-process points with their memory and budgets, sweeps that stop. No
timing is asserted."""
import argparse
import json
import os
import time
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import fit, flags, isolation, mfu, plots, report, sweep, text_config, timing
from benchmarks.rows import (ERROR, OK, OUT_OF_MEMORY, OUT_OF_TIME, SKIPPED, exit_code,
                             memory_above_base, per_token_us)
from spade_jax.model.config import ModelConfig
from spade_jax.runtime.errors import ConfigError, PathError

POINTS = "tests.benchmarks.points"
LENGTHS = [1024 * 2**i for i in range(7)]  # 1K .. 64K


@pytest.fixture(autouse=True)
def one_cpu_device(monkeypatch):
    """Points run in fresh processes: one CPU device there, as in a benchmark run."""
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")


def test_fit_exponent_recovers_the_power():
    times = [3e-7 * n**1.5 for n in LENGTHS]
    assert fit.fit_exponent(LENGTHS, times) == pytest.approx(1.5, abs=1e-9)
    noisy = np.array(times) * (1 + 0.05 * np.array([1, -1, 1, -1, 1, -1, 1]))
    assert fit.fit_exponent(LENGTHS, noisy) == pytest.approx(1.5, abs=0.03)
    assert fit.fit_exponent(LENGTHS, [7.0] * 7) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="two distinct lengths"):
        fit.fit_exponent([1024], [1.0])


def test_fit_series_uses_the_ok_rows_of_each_series():
    rows = [{"label": "a", "length": n, "status": OK, "median_s": 1e-6 * n}
            for n in LENGTHS[:3]]
    rows += [{"label": "a", "length": LENGTHS[3], "status": OUT_OF_MEMORY},
             {"label": "b", "length": 1024, "status": OK, "median_s": 1.0}]
    fits = fit.fit_series(rows, lambda r: r.get("median_s"))
    assert list(fits) == ["a"]  # b has one length only
    assert fits["a"]["exponent"] == pytest.approx(1.0)
    assert (fits["a"]["from"], fits["a"]["to"], fits["a"]["points"]) == (1024, 4096, 3)


def test_lengths_flag():
    assert flags.parse_lengths("1K,2K, 4096,1K") == [1024, 2048, 4096]
    assert flags.length_label(65536) == "64K" and flags.length_label(1000) == "1000"
    for bad in ("", "1.5K", "0", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            flags.parse_lengths(bad)
    p = flags.parser("test")
    quick = flags.parse(p, ["--quick"])
    assert quick.lengths == [256, 512] and quick.repeats == 2
    full = flags.parse(flags.parser("test"), ["--lengths=16K", "--repeats=3"])
    assert full.lengths == [16384] and full.repeats == 3 and full.timeout_s == 600
    assert flags.config_override("model.dropout=0.0") == ("model.dropout", 0.0)
    assert flags.config_override("model.s4.kernel=diag") == ("model.s4.kernel", "diag")
    assert flags.config_override("model.global_layers=(0, 2)") == ("model.global_layers", (0, 2))
    with pytest.raises(argparse.ArgumentTypeError):
        flags.config_override("model.dropout")


def test_target_lines():
    met = fit.target("speed-up", 31.0, 20, higher_is_better=True, unit="x")
    assert met["met"] is True and met["line"].endswith("measured: 31x met")
    missed = fit.target("exponent", 1.3, 1.15, higher_is_better=False)
    assert missed["met"] is False and "<= 1.15" in missed["line"]
    assert missed["line"].endswith("missed")
    absent = fit.target("speed-up", None, 20, higher_is_better=True,
                        missing="full: out of memory")
    assert absent["met"] is None and "not measured (full: out of memory)" in absent["line"]
    rows = {"spade": None, "full": {"status": OUT_OF_MEMORY, "length": 16384, "detail": "x"},
            "local": {"status": OK, "length": 16384}}
    assert fit.why_missing(rows) == "spade: not run; full at L=16K: out of memory (x)"


def test_writer_writes_json_markdown_png_and_never_overwrites(tmp_path, capsys):
    out = report.output_dir("demo", str(tmp_path / "run"))
    rows = [{"label": "a", "length": n, "status": OK, "median_s": 1e-6 * n, "tokens": n,
             "base_bytes": 100, "peak_bytes": 100 + n * 1000} for n in LENGTHS[:3]]
    rows.append({"label": "a", "length": LENGTHS[3], "status": SKIPPED, "detail": "stopped"})
    columns = [("series", lambda r: r["label"])] + report.TIMING_COLUMNS + report.MEMORY_COLUMNS
    args = SimpleNamespace(quick=True, lengths=LENGTHS[:4], _private=1)
    plot = lambda path: plots.loglog_plot(path, [  # noqa: E731
        {"title": "t", "ylabel": "us", "series": plots.series_points(rows, per_token_us)}],
        "demo")
    markdown = report.write_report(out, "demo", header={"host": "test"}, args=args, rows=rows,
                                   sections=[("Table", report.markdown_table(rows, columns))],
                                   targets=[fit.target("x", 1.0, 2, higher_is_better=False)],
                                   plot=plot)
    assert "| series | L | status |" in markdown and "| a | 8K | skipped: stopped |" in markdown
    assert "target: x <= 2; measured: 1 met" in capsys.readouterr().out
    record = json.loads((tmp_path / "run" / "demo.json").read_text())
    assert len(record["rows"]) == 4 and record["flags"] == {"quick": True, "lengths": LENGTHS[:4]}
    assert (tmp_path / "run" / "demo.md").read_text() == markdown
    assert (tmp_path / "run" / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(PathError, match="never overwritten"):
        report.output_dir("demo", str(tmp_path / "run"))


def test_default_output_folder_is_fresh_and_timestamped(tmp_path):
    path = report.output_dir("scaling", results=str(tmp_path))
    assert os.path.isdir(path) and os.path.dirname(path) == str(tmp_path / "scaling")
    assert not os.listdir(path)


def test_peak_memory_of_a_fresh_process_follows_its_allocation():
    """The child's peak is its own, also when started from a large process: ru_maxrss would
    carry this pytest worker's peak across execve (it did, inside the full suite)."""
    parent_peak = np.ones(1200 * 2**20 // 8)  # this process now peaks far above a point
    # Both sizes exceed what the warm-up may leave resident but free (which a small allocation
    # could reuse without raising the peak), so their difference is the 400 MB they differ by.
    small, large = (isolation.run_point(f"{POINTS}:allocate", {"megabytes": mb}, timeout_s=120)
                    for mb in (400, 800))
    assert small["status"] == large["status"] == OK
    assert small["memory_source"] == "process peak RSS"
    grown = memory_above_base(large) - memory_above_base(small)
    assert 340 * 2**20 < grown < 420 * 2**20  # 400 MB = 381 MiB more, a fresh process each
    del parent_peak


def test_points_past_their_budget_are_stopped():
    late = isolation.run_point(f"{POINTS}:sleep", {"seconds": 60}, timeout_s=4)
    assert late["status"] == OUT_OF_TIME and late["wall_s"] < 30
    big = isolation.run_point(f"{POINTS}:allocate", {"megabytes": 3000, "chunk_mb": 100,
                                                     "pause_s": 0.05}, timeout_s=120, memory_gb=0.8)
    assert big["status"] == OUT_OF_MEMORY and "budget" in big["detail"]


def test_a_sweep_stops_each_series_at_its_first_failure(capsys):
    args = SimpleNamespace(repeats=1, warmup=0, timeout_s=120, memory_gb=None)
    series = [{"label": "grows", "kwargs": {"fail_above": 1, "error": "memory"}},
              {"label": "bug", "kwargs": {"fail_above": 0, "error": "value"}}]
    header = {"host": "test"}
    rows = sweep.run(series, [1, 2, 3], args, f"{POINTS}:by_length", runtime=header)
    status = [(r["label"], r["length"], r["status"]) for r in rows]
    assert status == [("grows", 1, OK), ("grows", 2, OUT_OF_MEMORY),
                      ("grows", 3, SKIPPED), ("bug", 1, ERROR),
                      ("bug", 2, SKIPPED), ("bug", 3, SKIPPED)]
    assert rows[2]["detail"] == "stopped at L=2: out of memory"
    assert "ValueError: synthetic bug" in rows[3]["detail"]
    assert exit_code(rows) == 1 and exit_code(rows[:3]) == 0
    progress = capsys.readouterr().err
    assert "grows L=2: out of memory" in progress
    # side by side: every series at one length before the next length (the rows still come
    # back series by series)
    ran = [line.split(":")[0].strip() for line in progress.splitlines() if " L=" in line]
    assert ran == ["grows L=1", "bug L=1", "grows L=2"]
    # The points' JAX runtime is merged into the header passed in (the report's machine line).
    assert header["backend"] == "cpu" and header["device_count"] == 1 and header["host"] == "test"


def test_a_sweep_starts_no_point_after_its_deadline():
    """A time-boxed run's share (benchmarks.reproduce): the points after `until` are skipped
    unrun, with the reason; a series' own lengths replace the sweep's."""
    args = SimpleNamespace(repeats=1, warmup=0, timeout_s=120, memory_gb=None)
    series = [{"label": "first", "kwargs": {"fail_above": 9, "error": "memory"}},
              {"label": "own lengths", "lengths": [5], "kwargs": {"fail_above": 9,
                                                                 "error": "memory"}}]
    rows = sweep.run(series, [1, 2], args, f"{POINTS}:by_length", until=time.monotonic() - 1)
    assert [(r["label"], r["length"], r["status"], r["detail"]) for r in rows] == [
        ("first", 1, SKIPPED, "the time budget was spent"),
        ("first", 2, SKIPPED, "the time budget was spent"),
        ("own lengths", 5, SKIPPED, "the time budget was spent")]
    ran = sweep.run(series[1:], [1, 2], args, f"{POINTS}:by_length",
                    until=time.monotonic() + 600)
    assert [(r["length"], r["status"]) for r in ran] == [(5, OK)] and "lengths" not in ran[0]


def test_timed_calls_stop_at_the_deadline():
    calls = []
    full = timing.time_calls(lambda: calls.append(1), repeats=4, warmup=1)
    assert full["repeats"] == 4 and len(calls) == 5 and "note" not in full
    late = timing.time_calls(lambda: None, repeats=4, warmup=0, deadline=time.time() - 1)
    assert late["repeats"] == 1 and late["note"] == "1 of 4 repeats (time budget)"
    assert timing.deadline_after(100.0) == pytest.approx(time.time() + 80.0, abs=5.0)


def test_text_config_is_the_config_file_with_dotted_changes_checked():
    model = text_config.text_model("model=spade_chunk", **text_config.QUICK_MODEL)
    assert (model["d_model"], model["s4"]["d_state"], model["local_attention"]) == (32, 8, "chunk")
    assert text_config.text_config("model=spade").model.d_model == 128  # configs/text.py's PAPER
    with pytest.raises(ConfigError, match=r"config\.model\.d_modl: .*closest: d_model"):
        text_config.text_model("model=spade", d_modl=8)
    with pytest.raises(ConfigError, match="model family"):
        text_config.text_model("model=nonesuch")


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
    from spade_jax.model import families
    cfg = ModelConfig(family="spade", d_model=128, num_heads=4, d_ff=256, radius=127,
                      max_len=4096)
    terms = mfu.forward_breakdown(cfg, 4096, 32)
    total = families.forward_flops(cfg, 4096)
    assert terms["total"] == pytest.approx(32 * total["per_sequence"] + total["per_step_fixed"])
    assert sum(v for k, v in terms.items() if k != "total") == pytest.approx(terms["total"])
    assert all(v > 0 for v in terms.values())
